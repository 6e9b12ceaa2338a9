import Crypto
public import Foundation
public import GRDB
public import HearthCore

/// One credited receipt in the ledger: the gateway's countersigned entry and its place in the hash chain.
public struct LedgerRow: Codable, Sendable, Equatable, FetchableRecord {
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
    static func registerLedgerMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-ledger") { db in
            try db.create(table: "ledger") { table in
                table.column("seq", .integer).primaryKey()
                table.column("request_id", .text).notNull().unique()
                table.column("node_id", .text).notNull().indexed()
                table.column("account", .text).indexed()
                table.column("consumer", .text).notNull().indexed()
                table.column("model", .text).notNull()
                table.column("prompt_tokens", .integer).notNull()
                table.column("completion_tokens", .integer).notNull()
                table.column("entry", .blob).notNull()
                table.column("hash", .blob).notNull()
                table.column("created_at", .datetime).notNull()
            }
            try db.create(table: "receipt_rejections") { table in
                table.column("request_id", .text).notNull().indexed()
                table.column("node_id", .text).notNull().indexed()
                table.column("reason", .text).notNull()
                table.column("detail", .text).notNull()
                table.column("receipt", .blob)
                table.column("created_at", .datetime).notNull()
            }
        }
    }

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
        return try await commits.write { db in
            try usage.insert(db)
            try db.execute(sql: "DELETE FROM in_flight WHERE request_id = ?", arguments: [usage.requestID])
            if let account = usage.account {
                let tokens = Double(usage.promptTokens + usage.completionTokens)
                try Self.addToStanding(db, account: account, consumed: tokens, reciprocity: reciprocity, now: now)
            }
            switch settlement {
            case .none:
                return nil
            case .refuse(let reason, let detail, let signed):
                try db.execute(
                    sql: "INSERT INTO receipt_rejections (request_id, node_id, reason, detail, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [usage.requestID, usage.nodeID ?? "", reason, detail, signed.map { Data($0) }, now]
                )
                return nil
            case .credit(let receipt, let signed):
                let last = try Row.fetchOne(db, sql: "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
                let seq = (last?["seq"] as Int64? ?? 0) + 1
                let previous: Data = last?["hash"] ?? Data(count: 32)
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
                try db.execute(
                    sql: """
                        INSERT INTO ledger (seq, request_id, node_id, account, consumer, model, prompt_tokens, completion_tokens, entry, hash, created_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        row.seq, row.requestID, row.nodeID, row.account, row.consumer, row.model, row.promptTokens, row.completionTokens,
                        row.entry, row.hash, row.createdAt,
                    ]
                )
                if let shared {
                    for credit in shared where credit.tokens > 0 {
                        guard let account = credit.account else { continue }
                        try Self.addToStanding(db, account: account.rawValue, contributed: Double(credit.tokens), reciprocity: reciprocity, now: now)
                    }
                } else if let account = receipt.account {
                    let tokens = Double(receipt.promptTokens + receipt.completionTokens)
                    try Self.addToStanding(db, account: account.rawValue, contributed: tokens, reciprocity: reciprocity, now: now)
                }
                return row
            }
        }
    }

    /// The last entry's sequence number and hash (0 and 32 zero bytes when the ledger is empty).
    public func ledgerHead() async throws -> (seq: Int64, hash: Data) {
        try await writer.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
            return (row?["seq"] ?? 0, row?["hash"] ?? Data(count: 32))
        }
    }

    /// Ledger rows after `seq`, oldest first.
    public func ledger(after seq: Int64 = 0, limit: Int = 100) async throws -> [LedgerRow] {
        try await writer.read { db in
            try LedgerRow.fetchAll(db, sql: "SELECT * FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?", arguments: [seq, limit])
        }
    }

    /// How many of `node`'s receipts were ever refused.
    public func refusedReceiptCount(of node: NodeID) async throws -> Int {
        try await writer.read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM receipt_rejections WHERE node_id = ?", arguments: [node.rawValue]) ?? 0
        }
    }

    /// Refused receipts, newest first: (request id, node, reason).
    public func receiptRejections(limit: Int = 100) async throws -> [(requestID: String, node: String, reason: String)] {
        try await writer.read { db in
            try Row.fetchAll(db, sql: "SELECT request_id, node_id, reason FROM receipt_rejections ORDER BY rowid DESC LIMIT ?", arguments: [limit])
                .map { ($0["request_id"], $0["node_id"], $0["reason"]) }
        }
    }
}
