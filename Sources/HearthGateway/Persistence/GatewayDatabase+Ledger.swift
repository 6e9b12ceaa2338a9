import Crypto
package import Foundation
package import HearthCore
import HearthStore

/// One credited receipt in the ledger: the gateway's countersigned entry and its place in the hash chain.
package struct LedgerRow: Codable, Sendable, Equatable {
    /// The chain: the id of the gateway whose key countersigned the entry. Each gateway sharing a database keeps its
    /// own chain.
    var chain: String
    var seq: Int64
    var requestID: String
    package var nodeID: String
    var account: String?
    var consumer: String
    var model: String
    var promptTokens: Int
    package var completionTokens: Int
    /// The gateway's COSE_Sign1 over the entry (which holds the node's signed receipt and the previous hash).
    var entry: Data
    /// SHA-256 of `entry`: what the next entry commits to.
    var hash: Data
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case chain, seq
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
        chain = try row.string("chain")
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
package enum ReceiptSettlement: Sendable {
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

    /// One hash chain per gateway (its key countersigns its entries), so gateways sharing a database never contend
    /// for the next entry; a request id is still credited once in all chains. Entries made before are given to the
    /// gateway whose key signed them (`nameUnnamedChain`).
    static let ledgerChainsMigration = Migration(
        "v11-ledger-chains",
        [
            """
            CREATE TABLE ledger_chains (chain TEXT NOT NULL, seq {integer} NOT NULL, request_id TEXT NOT NULL UNIQUE,
                node_id TEXT NOT NULL, account TEXT, consumer TEXT NOT NULL, model TEXT NOT NULL, prompt_tokens {integer} NOT NULL,
                completion_tokens {integer} NOT NULL, entry {blob} NOT NULL, hash {blob} NOT NULL, created_at {datetime} NOT NULL,
                PRIMARY KEY (chain, seq))
            """,
            """
            INSERT INTO ledger_chains (chain, seq, request_id, node_id, account, consumer, model, prompt_tokens, completion_tokens,
                entry, hash, created_at)
            SELECT '', seq, request_id, node_id, account, consumer, model, prompt_tokens, completion_tokens, entry, hash, created_at
            FROM ledger
            """,
            "DROP TABLE ledger",
            "ALTER TABLE ledger_chains RENAME TO ledger",
            "CREATE INDEX ledger_on_node_id ON ledger (node_id)",
            "CREATE INDEX ledger_on_account ON ledger (account)",
            "CREATE INDEX ledger_on_consumer ON ledger (consumer)",
        ]
    )

    /// Names the chain of the entries made before chains were: the gateway whose key countersigned them (one gateway
    /// used a database then; its first entry says which).
    func nameUnnamedChain() async throws {
        try await store.write { session in
            guard let first = try session.queryOne("SELECT entry FROM ledger WHERE chain = '' ORDER BY seq LIMIT 1") else { return }
            guard let kid = try COSESign1(decoding: Array(try first.data("entry"))).keyID, kid.count == 32 else {
                throw SQLRowError(column: "entry", expected: "a COSE_Sign1 entry with the gateway's key id", found: .null)
            }
            try session.execute("UPDATE ledger SET chain = ? WHERE chain = ''", NodeID(publicKey: Data(kid)).rawValue)
        }
    }

    /// The key a chain's appends lock (PostgreSQL): a gateway's own appends are serialised by its group commit
    /// already; the lock keeps a second process with the same key (a restart overlapping the old one) from taking the
    /// same `seq`.
    static func chainLock(_ chain: String) -> Int64 {
        Int64(bitPattern: UInt64(chain.prefix(16), radix: 16) ?? 0x4845_4152_5448_4c47)
    }

    /// Stores a usage record and settles its receipt in one transaction: a credited receipt is appended to the
    /// ledger, countersigned by `gateway`, committing to the previous entry's hash. A second credit for the same
    /// request fails on the ledger's unique request id, and the whole transaction with it. The caller's account is
    /// charged the tokens as consumption, and a credited receipt's account gets them as contribution. A credit for a
    /// device its account revoked is refused instead (`revokedDevice`).
    /// - Returns: the appended ledger row; `nil` when nothing was credited (so for a credit, when it was refused).
    @discardableResult
    package func record(
        _ usage: UsageRecord,
        settling settlement: ReceiptSettlement,
        quota: QuotaCharge? = nil,
        gateway: IdentityKey,
        reciprocity: Reciprocity = Reciprocity(),
        accounts: (NodeID) -> NodeID? = { _ in nil },
        now: Date = Date()
    ) async throws -> LedgerRow? {
        // A pooled receipt is shared among its nodes, each credited to the account it serves for now.
        var credits: [LedgerEntry.Credit]?
        if case .credit(let receipt, _) = settlement { credits = LedgerEntry.credits(for: receipt, accounts: accounts) }
        let shared = credits
        // A bucket this gateway holds is settled in memory now, and written as it is when the transaction runs.
        let buckets = quotaBuckets
        let settledInMemory = quota.map { buckets?.charge($0, now: now.timeIntervalSince1970) == true } ?? false
        // Committed with the records of the other requests that finished meanwhile; this returns once it is durable.
        return try await commits.write { session in
            try Self.insert(usage, into: session)
            try session.execute("DELETE FROM in_flight WHERE request_id = ?", usage.requestID)
            if let quota, let buckets, settledInMemory {
                try buckets.write(quota.key, in: session)
                try Self.dropIdleBuckets(session, sparing: quota.key, now: now.timeIntervalSince1970)
            } else if let quota {
                try Self.chargeQuota(session, quota, now: now)
            }
            if let account = usage.account {
                let tokens = Double(usage.promptTokens + usage.completionTokens)
                try Self.addToStanding(session, account: account, consumed: tokens, reciprocity: reciprocity, now: now)
            }
            switch settlement {
            case .none:
                return nil
            case .refuse(let reason, let detail, let signed):
                try Self.reject(session, usage, reason: reason, detail: detail, signed: signed, now: now)
                return nil
            case .credit(let receipt, let signed):
                // A device its account revoked earns nothing, even for a request that was under way when it was
                // revoked. Asked here rather than before the transaction: one trip to the database less per request.
                if try Self.isRevoked(session, device: receipt.node) {
                    let (reason, detail) = Self.revokedDevice
                    try Self.reject(session, usage, reason: reason, detail: detail, signed: signed, now: now)
                    return nil
                }
                let chain = gateway.nodeID.rawValue
                try session.lock(Self.chainLock(chain))
                let (last, previous) = try Self.head(session, chain: chain)
                let seq = last + 1
                let entry = try LedgerEntry(seq: seq, previousHash: previous, receipt: signed, creditedAt: now, credits: shared).signed(by: gateway)
                let row = LedgerRow(
                    chain: chain,
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
                    INSERT INTO ledger (chain, seq, request_id, node_id, account, consumer, model, prompt_tokens, completion_tokens, entry,
                        hash, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    row.chain,
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

    /// Why a credit for a revoked device is refused, as `receipt_rejections` and the metrics say it.
    static let revokedDevice = (reason: "device_revoked", detail: "the node's account revoked this device")

    /// Keeps a refused receipt, with why, for the operator and the node's owner.
    private static func reject(
        _ session: any SQLSession,
        _ usage: UsageRecord,
        reason: String,
        detail: String,
        signed: [UInt8]?,
        now: Date
    ) throws {
        try session.execute(
            "INSERT INTO receipt_rejections (request_id, node_id, reason, detail, receipt, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            usage.requestID,
            usage.nodeID ?? "",
            reason,
            detail,
            signed.map { Data($0) },
            now
        )
    }

    static func head(_ session: any SQLSession, chain: String) throws -> (seq: Int64, hash: Data) {
        guard let row = try session.queryOne("SELECT seq, hash FROM ledger WHERE chain = ? ORDER BY seq DESC LIMIT 1", chain) else {
            return (0, Data(count: 32))
        }
        return (try row.int64("seq"), try row.data("hash"))
    }

    /// The chain meant by `chain`: the one named, else this gateway's own.
    private func chain(_ chain: String?) -> String? {
        chain ?? (gatewayID.isEmpty ? nil : gatewayID)
    }

    /// The last entry's sequence number and hash in `chain` (default: this gateway's own): 0 and 32 zero bytes when it
    /// is empty.
    func ledgerHead(chain: String? = nil) async throws -> (seq: Int64, hash: Data) {
        let chain = self.chain(chain) ?? ""
        return try await store.read { session in try Self.head(session, chain: chain) }
    }

    /// Entries of `chain` after `seq`, oldest first. Without a chain: this gateway's own, or every chain (in chain
    /// order) when the database was opened without a gateway (tools and tests reading a gateway's files).
    package func ledger(after seq: Int64 = 0, limit: Int = 100, chain: String? = nil) async throws -> [LedgerRow] {
        let chain = self.chain(chain)
        return try await store.read { session in
            let rows =
                if let chain {
                    try session.query("SELECT * FROM ledger WHERE chain = ? AND seq > ? ORDER BY seq LIMIT ?", chain, seq, limit)
                } else {
                    try session.query("SELECT * FROM ledger WHERE seq > ? ORDER BY chain, seq LIMIT ?", seq, limit)
                }
            return try rows.map(LedgerRow.init(row:))
        }
    }

    /// Every chain in the database: its gateway, entries and last hash.
    func ledgerChains() async throws -> [(chain: String, entries: Int64, hash: Data)] {
        try await store.read { session in
            try session.query(
                """
                SELECT ledger.chain AS chain, ledger.seq AS seq, ledger.hash AS hash FROM ledger
                JOIN (SELECT chain, MAX(seq) AS last FROM ledger GROUP BY chain) AS heads
                ON heads.chain = ledger.chain AND heads.last = ledger.seq ORDER BY ledger.chain
                """
            ).map { row in (try row.string("chain"), try row.int64("seq"), try row.data("hash")) }
        }
    }

    /// How many of `node`'s receipts were ever refused.
    func refusedReceiptCount(of node: NodeID) async throws -> Int {
        try await store.read { session in
            try session.queryOne("SELECT COUNT(*) AS refused FROM receipt_rejections WHERE node_id = ?", node.rawValue)?.int("refused") ?? 0
        }
    }

    /// Refused receipts, newest first: (request id, node, reason).
    package func receiptRejections(limit: Int = 100) async throws -> [(requestID: String, node: String, reason: String)] {
        try await store.read { session in
            try session.query("SELECT request_id, node_id, reason FROM receipt_rejections ORDER BY created_at DESC LIMIT ?", limit).map { row in
                (try row.string("request_id"), try row.string("node_id"), try row.string("reason"))
            }
        }
    }
}
