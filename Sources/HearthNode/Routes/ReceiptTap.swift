import Foundation
import HTTPTypes
import HearthCore
import HearthMesh
import NIOCore

/// Watches one engine response go by, unchanged, to learn what it is worth for the receipt: a stream's events are
/// counted as the gateway counts them (`StreamTokenCount`: the engine's usage event, or the timings' prompt size and
/// one token per content event); a whole answer is kept, up to its limit, for its `usage`.
struct UsageTap: Sendable {
    let streaming: Bool
    private var splitter = SSEEventSplitter()
    private var count = StreamTokenCount()
    /// A whole answer, up to its limit.
    private var answer = ByteBuffer()
    private static let answerLimit = 8 << 20

    init(streaming: Bool) {
        self.streaming = streaming
    }

    /// Runs `rewrite`, counting each whole event it reports as written, once it has succeeded: the events of a chunk
    /// whose rewriting then fails reach nobody, and are not counted.
    mutating func counting<Result>(_ rewrite: (_ eachEvent: (UnsafeRawBufferPointer) -> Void) throws -> Result) rethrows -> Result {
        var count = self.count
        let result = try rewrite { count.observe(bytes: $0) }
        self.count = count
        return result
    }

    /// Bytes of the response: a stream's are split into events here (its end: an unterminated event, or the events
    /// made of an answer the engine gave whole).
    mutating func observe(_ chunk: ByteBuffer) {
        if streaming {
            splitter.append(chunk)
            // It watches the rewriter's output, whole events only: an event too long never reaches it.
            while let event = try? splitter.nextEvent() { _ = event.withUnsafeReadableBytes { count.observe(bytes: $0) } }
        } else if answer.readableBytes + chunk.readableBytes <= Self.answerLimit {
            var chunk = chunk
            answer.writeBuffer(&chunk)
        }
    }

    /// The end of the stream: an unterminated last event counts too.
    mutating func finish() {
        if streaming, let rest = splitter.remainder() { _ = rest.withUnsafeReadableBytes { count.observe(bytes: $0) } }
    }

    /// Events counted on a stream (neither the usage report alone nor `[DONE]`).
    var events: Int { count.events }

    /// What a stream cut off before its usage event is worth (its usage when it came).
    var partialUsage: TokenUsage? { streaming ? count.counted : usage }

    /// The engine's counts, if it reported them.
    var usage: TokenUsage? {
        guard !streaming else { return count.usage }
        return answer.withUnsafeReadableBytes { CompletionChunk.wholeAnswerUsage($0.assumingMemoryBound(to: UInt8.self)) } ?? nil
    }
}

/// Signs receipts with the node's key for what it served.
struct ReceiptSigner: Sendable {
    let key: IdentityKey
    let account: NodeID?
    /// The gateway the node is linked to, once known.
    let gateway: @Sendable () -> NodeID?
    /// Where signed receipts are counted for the owner's dashboard.
    var log: ReceiptLog?

    /// The signed receipt as a trailer value (base64url of the COSE_Sign1 bytes), or `nil` when the gateway is not
    /// known or the request carried no id.
    func trailer(
        requestID: String?,
        consumer: String,
        spec: ModelSpec,
        usage: TokenUsage?,
        maxTokens: Int,
        startedAt: Date,
        outcome: Receipt.Outcome,
        pool: PoolShares? = nil
    ) -> String? {
        guard let requestID, !requestID.isEmpty, let gateway = gateway() else { return nil }
        let receipt = Receipt(
            requestID: requestID,
            gateway: gateway,
            node: key.nodeID,
            account: account,
            consumer: consumer,
            model: spec.id,
            modelSHA256: spec.sha256,
            promptTokens: usage?.promptTokens ?? 0,
            completionTokens: min(usage?.completionTokens ?? 0, maxTokens),
            maxTokens: maxTokens,
            startedAt: Int64(startedAt.timeIntervalSince1970 * 1000),
            finishedAt: Int64(Date().timeIntervalSince1970 * 1000),
            outcome: outcome,
            pool: pool
        )
        guard let bytes = try? receipt.signed(by: key).encoded() else { return nil }
        log?.signed(tokens: receipt.promptTokens + receipt.completionTokens)
        return SignedToken.base64url(Data(bytes))
    }
}

/// The receipt for one request, drafted when it comes in (its id, consumer, model, limit and start) and signed when its
/// answer ends.
struct ReceiptDraft: Sendable {
    let signer: ReceiptSigner?
    let requestID: String?
    let consumer: String
    let spec: ModelSpec
    let maxTokens: Int
    let pool: PoolShares?
    let startedAt = Date()

    /// The trailers that end the answer: the signed receipt (none without a signer or a request id), and the mark of a
    /// stream handed over to another node. `nil` when there is neither.
    func trailers(usage: TokenUsage?, outcome: Receipt.Outcome, handover: Bool = false) -> HTTPFields? {
        var trailers = HTTPFields()
        if let value = signer?.trailer(
            requestID: requestID,
            consumer: consumer,
            spec: spec,
            usage: usage,
            maxTokens: maxTokens,
            startedAt: startedAt,
            outcome: outcome,
            pool: pool
        ) {
            trailers[.init(LinkProtocol.receiptTrailer)!] = value
        }
        if handover { trailers[.init(LinkProtocol.handoverTrailer)!] = "1" }
        return trailers.isEmpty ? nil : trailers
    }
}
