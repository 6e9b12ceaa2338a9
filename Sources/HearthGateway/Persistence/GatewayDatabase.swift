package import Foundation
import HearthMesh
package import HearthStore
package import Logging

/// One metered request. Never holds prompt or completion text.
package struct UsageRecord: Codable, Sendable, Equatable {
    package var requestID: String
    /// The API route template, e.g. `/v1/chat/completions`.
    package var route: String
    package var model: String
    /// The serving node's id, or `nil` when no node was reached.
    package var nodeID: String?
    package var promptTokens: Int
    package var completionTokens: Int
    /// `ok`, `client_closed`, `upstream_error`, or the HTTP status of a refused request.
    package var status: String
    package var startedAt: Date
    /// Milliseconds to the first byte from the node.
    var firstByteMilliseconds: Double?
    var durationMilliseconds: Double
    /// Who asked (`anonymous`, `user:<id>`, `key:<id>`), and the account charged for it, if any.
    package var consumer: String?
    package var account: String?

    package init(
        requestID: String,
        route: String,
        model: String,
        nodeID: String?,
        promptTokens: Int,
        completionTokens: Int,
        status: String,
        startedAt: Date,
        firstByteMilliseconds: Double?,
        durationMilliseconds: Double,
        consumer: String? = nil,
        account: String? = nil
    ) {
        self.requestID = requestID
        self.route = route
        self.model = model
        self.nodeID = nodeID
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.status = status
        self.startedAt = startedAt
        self.firstByteMilliseconds = firstByteMilliseconds
        self.durationMilliseconds = durationMilliseconds
        self.consumer = consumer
        self.account = account
    }

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id"
        case route, model
        case nodeID = "node_id"
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case status
        case startedAt = "started_at"
        case firstByteMilliseconds = "first_byte_ms"
        case durationMilliseconds = "duration_ms"
        case consumer, account
    }
}

/// The gateway's database: SQLite (embedded, the default) or PostgreSQL (shared by several gateways). Every query
/// is written once against `SQLSession` (HearthStore) and runs on either.
package struct GatewayDatabase: Sendable {
    package let store: any SQLStore
    /// The per-request writes (usage rows, ledger entries, in-flight notes), committed in groups (`GroupCommit`).
    let commits: GroupCommit
    /// SQLite's quota buckets, held in memory and written behind (one gateway uses a SQLite database); `nil` for
    /// PostgreSQL, whose gateways share theirs as rows.
    let quotaBuckets: QuotaBuckets?
    /// The gateway using this database (its node id): what it marks as its own where gateways share one.
    package var gatewayID = ""

    /// Opens `gateway.sqlite` in `directory` (creating the folder, owner-only), or an in-memory database when
    /// `directory` is nil.
    static func open(directory: String?) throws -> GatewayDatabase {
        guard let directory else { return GatewayDatabase(store: try SQLiteStore.open(path: nil)) }
        try KeyFile.createPrivateDirectory(directory)
        let path = (directory as NSString).appendingPathComponent("gateway.sqlite")
        try KeyFile.makeOwnerOnly(path, creating: true)
        for suffix in ["-wal", "-shm"] { try KeyFile.makeOwnerOnly(path + suffix, creating: false) }
        return GatewayDatabase(store: try SQLiteStore.open(path: path))
    }

    /// Connects to a PostgreSQL database and checks that it answers.
    static func open(url: DatabaseURL, logger: Logger) async throws -> GatewayDatabase {
        let store = try PostgresStore(url: url, logger: logger)
        do {
            try await store.ping()
        } catch {
            await store.close()
            throw error
        }
        return GatewayDatabase(store: store)
    }

    /// The database a gateway is told to use: PostgreSQL at `url` when given, else SQLite in `directory`.
    package static func open(url: DatabaseURL?, directory: String?, logger: Logger) async throws -> GatewayDatabase {
        if let url { return try await open(url: url, logger: logger) }
        return try open(directory: directory)
    }

    package init(store: any SQLStore) {
        self.store = store
        commits = GroupCommit(store: store)
        quotaBuckets = store.dialect == .sqlite ? QuotaBuckets() : nil
    }

    /// Which database this is.
    var dialect: SQLDialect { store.dialect }

    /// Brings the schema up to date. Migrations are named and never edited once shipped.
    package func migrate() async throws {
        try await store.migrate(Self.migrations)
    }

    /// Closes the database's connections.
    package func close() async {
        await store.close()
    }

    /// Every migration, in the order they shipped.
    static let migrations: [Migration] =
        [usageMigration, apiKeyMigration, networkMigration, ledgerMigration, standingMigration, inFlightMigration, poolMigration]
        + [spotCheckMigration, accountActivityMigration, loginMigration, ledgerChainsMigration, quotaMigration]
        + [gatewaysMigration, poolGatewayMigration]

    static let usageMigration = Migration(
        "v1-usage",
        [
            """
            CREATE TABLE usage (request_id TEXT PRIMARY KEY NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, node_id TEXT,
                prompt_tokens {integer} NOT NULL, completion_tokens {integer} NOT NULL, status TEXT NOT NULL,
                started_at {datetime} NOT NULL, first_byte_ms {double}, duration_ms {double} NOT NULL)
            """,
            "CREATE INDEX usage_started_at ON usage (started_at)",
        ]
    )

    static let usageColumns =
        "request_id, route, model, node_id, prompt_tokens, completion_tokens, status, started_at, first_byte_ms, duration_ms, consumer, account"

    static func insert(_ usage: UsageRecord, into session: any SQLSession, ignoringDuplicates: Bool = false) throws {
        try session.execute(
            "INSERT INTO usage (\(usageColumns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                + (ignoringDuplicates ? " ON CONFLICT (request_id) DO NOTHING" : ""),
            usage.requestID,
            usage.route,
            usage.model,
            usage.nodeID,
            usage.promptTokens,
            usage.completionTokens,
            usage.status,
            usage.startedAt,
            usage.firstByteMilliseconds,
            usage.durationMilliseconds,
            usage.consumer,
            usage.account
        )
    }

    /// Stores one usage record.
    func record(_ usage: UsageRecord) async throws {
        try await store.write { session in try Self.insert(usage, into: session) }
    }

    /// The most recent usage records, newest first.
    package func recentUsage(limit: Int = 100) async throws -> [UsageRecord] {
        try await store.read { session in
            try session.query("SELECT \(Self.usageColumns) FROM usage ORDER BY started_at DESC LIMIT ?", limit).map(UsageRecord.init(row:))
        }
    }
}

extension UsageRecord {
    init(row: SQLRow) throws {
        self.init(
            requestID: try row.string("request_id"),
            route: try row.string("route"),
            model: try row.string("model"),
            nodeID: row.optionalString("node_id"),
            promptTokens: try row.int("prompt_tokens"),
            completionTokens: try row.int("completion_tokens"),
            status: try row.string("status"),
            startedAt: try row.date("started_at"),
            firstByteMilliseconds: row.optionalDouble("first_byte_ms"),
            durationMilliseconds: try row.double("duration_ms"),
            consumer: row.optionalString("consumer"),
            account: row.optionalString("account")
        )
    }
}
