import Foundation

/// A node's signed statement about one request it served: which request and gateway, which node and account,
/// which consumer, which model (id and GGUF SHA-256), the engine's token counts, when it started and finished,
/// and how it ended. Encoded as a deterministic CBOR map with text keys inside a COSE_Sign1 signed by the node.
///
/// Version 2 adds `pool`: a pool's head names the pool, the plan's epoch and every node's layers, so each is credited
/// its share. A receipt without a pool is still version 1, byte for byte.
package struct Receipt: Sendable, Equatable {
    package static let version: Int64 = 1
    package static let pooledVersion: Int64 = 2

    package var requestID: String
    var gateway: NodeID
    package var node: NodeID
    /// The account whose device certificate the node presented, if any.
    package var account: NodeID?
    /// `anonymous`, `user:<account id>` or `key:<api key id>`, as the gateway told the node.
    package var consumer: String
    package var model: ModelID
    var modelSHA256: SHA256Digest
    package var promptTokens: Int
    package var completionTokens: Int
    /// The `max_tokens` the gateway sent; `completionTokens` never exceeds it.
    var maxTokens: Int
    /// Unix milliseconds.
    var startedAt: Int64
    var finishedAt: Int64
    var outcome: Outcome
    /// The pool that computed the answer, when the node is its head.
    package var pool: PoolShares?

    /// How the request ended.
    package enum Outcome: String, Sendable, CaseIterable {
        /// The engine finished its answer.
        case ok
        /// The gateway went away before the end (its client disconnected).
        case cancelled
        /// The engine failed mid-answer.
        case engineError = "engine_error"
    }

    package init(
        requestID: String,
        gateway: NodeID,
        node: NodeID,
        account: NodeID?,
        consumer: String,
        model: ModelID,
        modelSHA256: SHA256Digest,
        promptTokens: Int,
        completionTokens: Int,
        maxTokens: Int,
        startedAt: Int64,
        finishedAt: Int64,
        outcome: Outcome,
        pool: PoolShares? = nil
    ) {
        self.requestID = requestID
        self.gateway = gateway
        self.node = node
        self.account = account
        self.consumer = consumer
        self.model = model
        self.modelSHA256 = modelSHA256
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.maxTokens = maxTokens
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.outcome = outcome
        self.pool = pool
    }

    static let keys = [
        "v", "request", "gateway", "node", "account", "consumer", "model", "model_sha256", "prompt_tokens",
        "completion_tokens", "max_tokens", "started_ms", "finished_ms", "outcome",
    ]

    /// The receipt as a CBOR map (text keys; `account` is null for an uncertified node).
    package var cbor: CBOR {
        var pairs: [(CBOR, CBOR)] = [
            (.text("v"), .int(pool == nil ? Self.version : Self.pooledVersion)),
            (.text("request"), .text(requestID)),
            (.text("gateway"), .text(gateway.rawValue)),
            (.text("node"), .text(node.rawValue)),
            (.text("account"), account.map { .text($0.rawValue) } ?? .null),
            (.text("consumer"), .text(consumer)),
            (.text("model"), .text(model.rawValue)),
            (.text("model_sha256"), .text(modelSHA256.hex)),
            (.text("prompt_tokens"), .int(Int64(promptTokens))),
            (.text("completion_tokens"), .int(Int64(completionTokens))),
            (.text("max_tokens"), .int(Int64(maxTokens))),
            (.text("started_ms"), .int(startedAt)),
            (.text("finished_ms"), .int(finishedAt)),
            (.text("outcome"), .text(outcome.rawValue)),
        ]
        if let pool { pairs.append((.text("pool"), pool.cbor)) }
        return .map(pairs)
    }

    /// Reads a receipt map. Every key must be present, with its type, and no other key.
    /// - Throws: `ReceiptError.malformed` naming the field.
    package init(cbor: CBOR) throws(ReceiptError) {
        let pooled = cbor[.text("v")]?.int64 == Self.pooledVersion
        let keys = Self.keys + (pooled ? ["pool"] : [])
        guard case .map(let pairs) = cbor, pairs.count == keys.count else { throw .malformed("not a receipt map") }
        var fields: [String: CBOR] = [:]
        for (key, value) in pairs {
            guard let name = key.textValue, keys.contains(name) else { throw .malformed("unknown key") }
            fields[name] = value
        }
        func text(_ key: String) throws(ReceiptError) -> String {
            guard let value = fields[key]?.textValue else { throw .malformed(key) }
            return value
        }
        func count(_ key: String) throws(ReceiptError) -> Int {
            guard let value = fields[key]?.int64, value >= 0, value <= Int64(Int32.max) else { throw .malformed(key) }
            return Int(value)
        }
        func milliseconds(_ key: String) throws(ReceiptError) -> Int64 {
            guard let value = fields[key]?.int64, value >= 0 else { throw .malformed(key) }
            return value
        }
        guard fields["v"]?.int64 == Self.version || pooled else { throw .malformed("v") }
        let pool = try fields["pool"].map { value throws(ReceiptError) in try PoolShares(cbor: value) }
        guard let gateway = NodeID(try text("gateway")) else { throw .malformed("gateway") }
        guard let node = NodeID(try text("node")) else { throw .malformed("node") }
        let account: NodeID?
        switch fields["account"] {
        case .null: account = nil
        case .text(let value):
            guard let id = NodeID(value) else { throw .malformed("account") }
            account = id
        default: throw .malformed("account")
        }
        guard let model = ModelID(try text("model")) else { throw .malformed("model") }
        guard let digest = SHA256Digest(hex: try text("model_sha256")) else { throw .malformed("model_sha256") }
        guard let outcome = Outcome(rawValue: try text("outcome")) else { throw .malformed("outcome") }
        let requestID = try text("request")
        guard !requestID.isEmpty, requestID.utf8.count <= 128 else { throw .malformed("request") }
        let consumer = try text("consumer")
        guard consumer.utf8.count <= 128 else { throw .malformed("consumer") }
        self.init(
            requestID: requestID,
            gateway: gateway,
            node: node,
            account: account,
            consumer: consumer,
            model: model,
            modelSHA256: digest,
            promptTokens: try count("prompt_tokens"),
            completionTokens: try count("completion_tokens"),
            maxTokens: try count("max_tokens"),
            startedAt: try milliseconds("started_ms"),
            finishedAt: try milliseconds("finished_ms"),
            outcome: outcome,
            pool: pool
        )
    }

    /// The receipt signed by the node's key.
    package func signed(by key: IdentityKey) throws -> COSESign1 {
        try COSESign1.sign(payload: try cbor.encoded(), with: key)
    }

    /// Reads and verifies a node's signed receipt: the signature must be by the key of `node` (the NodeID its link
    /// proved), and the receipt must name that node.
    /// - Throws: `ReceiptError` saying what is wrong.
    package static func verified(_ message: COSESign1, from node: NodeID) throws(ReceiptError) -> Receipt {
        guard let keyID = message.keyID, keyID.count == 32, NodeID(publicKey: keyID) == node else { throw .wrongSigner }
        guard message.isValid(publicKey: Data(keyID)) else { throw .badSignature }
        let item: CBOR
        do {
            item = try CBOR(decoding: message.payload)
        } catch {
            throw .malformed("payload is not deterministic CBOR")
        }
        let receipt = try Receipt(cbor: item)
        guard receipt.node == node else { throw .wrongSigner }
        return receipt
    }

    /// What the gateway saw of the request, to hold a receipt against.
    package struct Relayed: Sendable, Equatable {
        var requestID: String
        var gateway: NodeID
        /// The account of the device certificate the node's link presented (`nil` for an uncertified node).
        package var account: NodeID?
        var model: ModelID
        var modelSHA256: SHA256Digest
        var consumer: String
        var maxTokens: Int
        /// The engine's own counts, as they passed through the gateway (`nil` when none came).
        var promptTokens: Int?
        var completionTokens: Int?
        /// The most prompt tokens the request the node got could make (`UsageBounds`); `nil` sets no bound.
        var promptTokenLimit: Int?
        /// Unix milliseconds: when the gateway sent the request, and when the node's answer ended.
        var sentAt: Int64
        var endedAt: Int64

        package init(
            requestID: String,
            gateway: NodeID,
            account: NodeID? = nil,
            model: ModelID,
            modelSHA256: SHA256Digest,
            consumer: String,
            maxTokens: Int,
            promptTokens: Int?,
            completionTokens: Int?,
            promptTokenLimit: Int? = nil,
            sentAt: Int64,
            endedAt: Int64
        ) {
            self.requestID = requestID
            self.gateway = gateway
            self.account = account
            self.model = model
            self.modelSHA256 = modelSHA256
            self.consumer = consumer
            self.maxTokens = maxTokens
            self.promptTokens = promptTokens
            self.completionTokens = completionTokens
            self.promptTokenLimit = promptTokenLimit
            self.sentAt = sentAt
            self.endedAt = endedAt
        }
    }

    /// Why this receipt cannot be credited for `relayed`, or `nil` when it holds. Clocks may differ by `skew`.
    package func problem(against relayed: Relayed, skewMilliseconds: Int64 = 5_000) -> ReceiptError? {
        guard requestID == relayed.requestID, gateway == relayed.gateway else { return .mismatch("another request or gateway") }
        guard account == relayed.account else { return .mismatch("an account the node's certificate does not name") }
        guard model == relayed.model, modelSHA256 == relayed.modelSHA256 else { return .mismatch("another model") }
        guard consumer == relayed.consumer else { return .mismatch("another consumer") }
        guard maxTokens == relayed.maxTokens, completionTokens <= maxTokens else { return .mismatch("completion_tokens above max_tokens") }
        if let prompt = relayed.promptTokens, promptTokens > prompt { return .mismatch("prompt_tokens above what the engine reported") }
        if let limit = relayed.promptTokenLimit, promptTokens > limit { return .mismatch("prompt_tokens above what the request could make") }
        if let completion = relayed.completionTokens, completionTokens > completion {
            return .mismatch("completion_tokens above what the engine reported")
        }
        if relayed.promptTokens == nil && relayed.completionTokens == nil && promptTokens + completionTokens > 0 {
            return .mismatch("tokens claimed but the engine reported none")
        }
        guard startedAt <= finishedAt, startedAt + skewMilliseconds >= relayed.sentAt, finishedAt <= relayed.endedAt + skewMilliseconds else {
            return .mismatch("times outside the request")
        }
        return nil
    }
}

/// Why a receipt is refused. `reason` is a short stable code for the audit log and metrics.
package struct ReceiptError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of refusal it is; more may be added.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        /// A field missing, of the wrong type or out of range; an unknown key.
        static let malformed = Code(name: "malformed")
        /// Signed by another key than the node that served the request.
        static let wrongSigner = Code(name: "wrong_signer")
        /// The signature does not verify.
        static let badSignature = Code(name: "bad_signature")
        /// Signed, but not about what the gateway relayed (tokens, request, model).
        static let mismatch = Code(name: "mismatch")
        var description: String { name }
    }

    var code: Code
    /// What was wrong, for a person: the field, the difference.
    package var description: String

    /// The code alone, stable and bounded: the audit log's and the metrics' label.
    package var reason: String { code.description }

    package static func malformed(_ field: String) -> ReceiptError { ReceiptError(code: .malformed, description: "malformed receipt (\(field))") }
    package static let wrongSigner = ReceiptError(code: .wrongSigner, description: "the receipt is not signed by the node that served the request")
    package static let badSignature = ReceiptError(code: .badSignature, description: "the receipt's signature does not verify")

    package static func mismatch(_ detail: String) -> ReceiptError {
        ReceiptError(code: .mismatch, description: "the receipt does not match what the gateway relayed: \(detail)")
    }
}
