public import Foundation
public import GRDB
public import HearthCore

/// One spot check of a node's answer (docs/ROUTING.md, "Spot checks").
public struct SpotCheckRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "spot_checks"

    /// The checked request, the node that answered it and the node whose model scored the answer.
    public var requestID: String
    public var nodeID: String
    public var checkerID: String
    public var model: String
    public var tokens: Int
    public var meanLogprob: Double
    public var outsideTopK: Double
    /// `pass`, `fail`, or `inconclusive` (no other node, or its answer did not follow the claimed tokens).
    public var result: String
    public var reason: String?
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case requestID = "request_id"
        case nodeID = "node_id"
        case checkerID = "checker_id"
        case model, tokens
        case meanLogprob = "mean_logprob"
        case outsideTopK = "outside_top_k"
        case result, reason
        case createdAt = "created_at"
    }
}

extension GatewayDatabase {
    static func registerSpotCheckMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v8-spot-checks") { db in
            try db.create(table: "spot_checks") { table in
                table.autoIncrementedPrimaryKey("id")
                table.column("request_id", .text).notNull()
                table.column("node_id", .text).notNull().indexed()
                table.column("checker_id", .text).notNull()
                table.column("model", .text).notNull()
                table.column("tokens", .integer).notNull()
                table.column("mean_logprob", .double).notNull()
                table.column("outside_top_k", .double).notNull()
                table.column("result", .text).notNull()
                table.column("reason", .text)
                table.column("created_at", .datetime).notNull()
            }
        }
    }

    public func record(_ check: SpotCheckRecord) async throws {
        try await writer.write { db in try check.insert(db) }
    }

    /// The most recent spot checks, newest first; of one node when `node` is given.
    public func spotChecks(of node: NodeID? = nil, limit: Int = 100) async throws -> [SpotCheckRecord] {
        try await writer.read { db in
            var request = SpotCheckRecord.order(Column("id").desc).limit(limit)
            if let node { request = request.filter(Column("node_id") == node.rawValue) }
            return try request.fetchAll(db)
        }
    }
}
