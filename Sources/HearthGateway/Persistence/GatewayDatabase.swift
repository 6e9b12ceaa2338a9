public import Foundation
public import GRDB
import HearthMesh

/// One metered request. Never holds prompt or completion text.
public struct UsageRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "usage"

    public var requestID: String
    /// The API route template, e.g. `/v1/chat/completions`.
    public var route: String
    public var model: String
    /// The serving node's id, or `nil` when no node was reached.
    public var nodeID: String?
    public var promptTokens: Int
    public var completionTokens: Int
    /// `ok`, `client_closed`, `upstream_error`, or the HTTP status of a refused request.
    public var status: String
    public var startedAt: Date
    /// Milliseconds to the first byte from the node.
    public var firstByteMilliseconds: Double?
    public var durationMilliseconds: Double
    /// Who asked (`anonymous`, `user:<id>`, `key:<id>`), and the account charged for it, if any.
    public var consumer: String?
    public var account: String?

    public init(
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

/// The gateway's SQLite database (WAL mode), opened once per process.
public struct GatewayDatabase: Sendable {
    let writer: any DatabaseWriter
    /// The per-request writes (usage rows, ledger entries, in-flight notes), committed in groups (`GroupCommit`).
    let commits: GroupCommit

    /// Opens `gateway.sqlite` in `directory` (creating the folder), or an in-memory database when `directory` is nil.
    public static func open(directory: String?) throws -> GatewayDatabase {
        guard let directory else { return GatewayDatabase(writer: try DatabaseQueue()) }
        try KeyFile.createPrivateDirectory(directory)
        let path = (directory as NSString).appendingPathComponent("gateway.sqlite")
        try KeyFile.makeOwnerOnly(path, creating: true)
        for suffix in ["-wal", "-shm"] { try KeyFile.makeOwnerOnly(path + suffix, creating: false) }
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        let pool = try DatabasePool(path: path, configuration: configuration)
        return GatewayDatabase(writer: pool)
    }

    private init(writer: any DatabaseWriter) {
        self.writer = writer
        commits = GroupCommit(writer: writer)
    }

    /// Brings the schema up to date. Migrations are named and never edited once shipped.
    public func migrate() async throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-usage") { db in
            try db.create(table: "usage") { table in
                table.column("request_id", .text).primaryKey()
                table.column("route", .text).notNull()
                table.column("model", .text).notNull()
                table.column("node_id", .text)
                table.column("prompt_tokens", .integer).notNull()
                table.column("completion_tokens", .integer).notNull()
                table.column("status", .text).notNull()
                table.column("started_at", .datetime).notNull()
                table.column("first_byte_ms", .double)
                table.column("duration_ms", .double).notNull()
            }
            try db.create(index: "usage_started_at", on: "usage", columns: ["started_at"])
        }
        Self.registerAPIKeyMigrations(&migrator)
        Self.registerNetworkMigrations(&migrator)
        Self.registerLedgerMigrations(&migrator)
        Self.registerStandingMigrations(&migrator)
        Self.registerInFlightMigrations(&migrator)
        Self.registerPoolMigrations(&migrator)
        Self.registerSpotCheckMigrations(&migrator)
        Self.registerAccountActivityMigrations(&migrator)
        try migrator.migrate(writer)
    }

    /// Stores one usage record.
    public func record(_ usage: UsageRecord) async throws {
        try await writer.write { db in try usage.insert(db) }
    }

    /// The most recent usage records, newest first.
    public func recentUsage(limit: Int = 100) async throws -> [UsageRecord] {
        try await writer.read { db in
            try UsageRecord.order(Column("started_at").desc).limit(limit).fetchAll(db)
        }
    }
}
