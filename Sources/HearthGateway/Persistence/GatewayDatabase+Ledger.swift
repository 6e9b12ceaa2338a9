import Crypto
public import Foundation
public import HearthCore
public import HearthStore

/// One credited receipt in the ledger: the gateway's countersigned entry and its place in the hash chain.
public struct LedgerRow: Codable, Sendable, Equatable {
    public var seq: Int64
    public var requestID: String
    public var nodeID: String
    public var account: String?
    public var consumer: String
    public var model: String
    public var promptTokens: Int
    public var completionTokens: Int
    /// The gateway's COSE_Sign1 over the entry (which holds the node's signed receipt and the previous hash).
    public var entry: Data
    /// SHA-256 of `entry`: what the next entry commits to.
    public var hash: Data
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case seq
        case requestID = "request_id"
        case nodeID = "node_id"
        case account, consumer, model
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case entry, hash
        case createdAt = "created_at"
    }
}

extension LedgerRow {
    init(row: SQLRow) throws {
        seq = try row.int64("seq")
        requestID = try row.string("request_id")
        nodeID = try row.string("node_id")
        account = row.optionalString("account")
        consumer = try row.string("consumer")
        model = try row.string("model")
        promptTokens = try row.int("prompt_tokens")
        completionTokens = try row.int("completion_tokens")
        entry = try row.data("entry")
        hash = try row.data("hash")
        createdAt = try row.date("created_at")
    }
}

/// What to do with a receipt when a request is metered.
public enum ReceiptSettlement: Sendable {
    /// Credit it: append the countersigned entry to the ledger.
    case credit(Receipt, signed: [UInt8])
    /// Keep it for audit, uncredited, with the reason.
    case refuse(reason: String, detail: String, signed: [UInt8]?)
    /// Nothing to credit or audit (the client left before the end, or the request never reached a node).
    case none
}

extension GatewayDatabase {
    static let ledgerMigration = Migration(
        "v4-ledger",
        [
            """
            CREATE TABLE ledger (seq {integer} PRIMARY KEY NOT NULL, request_id TEXT NOT NULL UNIQUE, node_id TEXT NOT NULL,
                account TEXT, consumer TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens {integer} NOT NULL,
                completion_tokens {integer} NOT NULL, entry {blob} NOT NULL, hash {blob} NOT NULL, created_at {datetime} NOT NULL)
            """,
            "CREATE INDEX ledger_on_node_id ON ledger (node_id)",
            "CREATE INDEX ledger_on_account ON ledger (account)",
            "CREATE INDEX ledger_on_consumer ON ledger (consumer)",
            """
            CREATE TABLE receipt_rejections (request_id TEXT NOT NULL, node_id TEXT NOT NULL, reason TEXT NOT NULL,
                detail TEXT NOT NULL, receipt {blob}, created_at {datetime} NOT NULL)
            """,
            "CREATE INDEX receipt_rejections_on_request_id ON receipt_rejections (request_id)",
            "CREATE INDEX receipt_rejections_on_node_id ON receipt_rejections (node_id)",
        ]
    )

    /// The key appends to the ledger lock (PostgreSQL), so that two gateways never take the same next `seq`.
    static let ledgerLock: Int64 = 0x4845_4152_5448_4c47

    /// Stores a usage record and settles its receipt in one transaction: a credited receipt is appended to the
    /// ledger, countersigned by `gateway`, committing to the previous entry's hash. A second credit for the same
    /// request fails on the ledger's unique request id, and the whole transaction with it. The caller's account is
    /// charged the tokens as consumption, and a credited receipt's account gets them as contribution.
    /// - Returns: the appended ledger row, if any.
    @discardableResult
    public func record(
        _ usage: UsageRecord,
        settling settlement: ReceiptSettlement,
        gateway: IdentityKey,
        reciprocity: Reciprocity = Reciprocity(),
        accounts: (NodeID) -> NodeID? = { _ in nil },
        now: Date = Date()
    ) async throws -> LedgerRow? {
        // A pooled receipt is shared among its nodes, each credited to the account it serves for now.
        var credits: [LedgerEntry.Credit]?
        if case .credit(let receipt, _) = settlement { credits = LedgerEntry.credits(for: receipt, accounts: accounts) }
        let shared = credits
        // Committed with the records of the other requests that finished meanwhile; this returns once it is durable.
        return try await commits.write { session in
            try Self.insert(usage, into: session)
            try session.execute("DELETE FROM in_flight WHERE request_id = ?", usage.requestID)
            if let account = usage.account {
                let tokens = Double(usage.promptTokens + usage.completionTokens)
                try Self.addToStanding(session, account: account, consumed: tokens, reciprocity: reciprocity, now: now)
            }
            switch settlement {
            case .none:
                return nil
            case .refuse(let reason, let detail, let signed):
                try session.execute(
                    "INSERT INTO receipt_rejections (request_id, node_id, reason, detail, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    usage.requestID,
                    usage.nodeID ?? "",
                    reason,
                    detail,
                    signed.map { Data($0) },
                    now
                )
                return nil
            case .credit(let receipt, let signed):
                try session.lock(Self.ledgerLock)
                let (last, previous) = try Self.head(session)
                let seq = last + 1
                let entry = try LedgerEntry(seq: seq, previousHash: previous, receipt: signed, creditedAt: now, credits: shared).signed(by: gateway)
                let row = LedgerRow(
                    seq: seq,
                    requestID: receipt.requestID,
                    nodeID: receipt.node.rawValue,
                    account: receipt.account?.rawValue,
                    consumer: receipt.consumer,
                    model: receipt.model.rawValue,
                    promptTokens: receipt.promptTokens,
                    completionTokens: receipt.completionTokens,
                    entry: Data(entry),
                    hash: Data(SHA256.hash(data: entry)),
                    createdAt: now
                )
                try session.execute(
                    """
                    INSERT INTO ledger (seq, request_id, node_id, account, consumer, model, prompt_tokens, completion_tokens, entry, hash, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    row.seq,
                    row.requestID,
                    row.nodeID,
                    row.account,
                    row.consumer,
                    row.model,
                    row.promptTokens,
                    row.completionTokens,
                    row.entry,
                    row.hash,
                    row.createdAt
                )
                if let shared {
                    for credit in shared where credit.tokens > 0 {
                        guard let account = credit.account else { continue }
                        try Self.addToStanding(
                            session,
                            account: account.rawValue,
                            contributed: Double(credit.tokens),
                            reciprocity: reciprocity,
                            now: now
                        )
                    }
                } else if let account = receipt.account {
                    let tokens = Double(receipt.promptTokens + receipt.completionTokens)
                    try Self.addToStanding(session, account: account.rawValue, contributed: tokens, reciprocity: reciprocity, now: now)
                }
                return row
            }
        }
    }

    static func head(_ session: any SQLSession) throws -> (seq: Int64, hash: Data) {
        guard let row = try session.queryOne("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1") else { return (0, Data(count: 32)) }
        return (try row.int64("seq"), try row.data("hash"))
    }

    /// The last entry's sequence number and hash (0 and 32 zero bytes when the ledger is empty).
    public func ledgerHead() async throws -> (seq: Int64, hash: Data) {
        try await store.read { session in try Self.head(session) }
    }

    /// Ledger rows after `seq`, oldest first.
    public func ledger(after seq: Int64 = 0, limit: Int = 100) async throws -> [LedgerRow] {
        try await store.read { session in
            try session.query("SELECT * FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?", seq, limit).map(LedgerRow.init(row:))
        }
    }

    /// How many of `node`'s receipts were ever refused.
    public func refusedReceiptCount(of node: NodeID) async throws -> Int {
        try await store.read { session in
            try session.queryOne("SELECT COUNT(*) AS refused FROM receipt_rejections WHERE node_id = ?", node.rawValue)?.int("refused") ?? 0
        }
    }

    /// Refused receipts, newest first: (request id, node, reason).
    public func receiptRejections(limit: Int = 100) async throws -> [(requestID: String, node: String, reason: String)] {
        try await store.read { session in
            try session.query("SELECT request_id, node_id, reason FROM receipt_rejections ORDER BY created_at DESC LIMIT ?", limit).map { row in
                (try row.string("request_id"), try row.string("node_id"), try row.string("reason"))
            }
        }
    }
}
