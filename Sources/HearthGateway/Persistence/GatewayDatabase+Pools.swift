public import Foundation
public import GRDB

/// A pool's definition as stored, so that it outlives a gateway restart (its plan does not: it is made again).
public struct PoolRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "pools"

    public var id: String
    public var model: String
    /// The operator's node list, comma-separated; `nil` lets the planner choose.
    public var nodes: String?
    public var automatic: Bool
    public var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, model, nodes, automatic
        case createdAt = "created_at"
    }
}

extension GatewayDatabase {
    static func registerPoolMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v7-pools") { db in
            try db.create(table: "pools") { table in
                table.column("id", .text).primaryKey()
                table.column("model", .text).notNull()
                table.column("nodes", .text)
                table.column("automatic", .boolean).notNull()
                table.column("created_at", .datetime).notNull()
            }
        }
    }

    func savePool(_ pool: PoolRecord) async throws {
        try await writer.write { db in try pool.save(db) }
    }

    func deletePool(id: String) async throws {
        _ = try await writer.write { db in try PoolRecord.deleteOne(db, key: id) }
    }

    func pools() async throws -> [PoolRecord] {
        try await writer.read { db in try PoolRecord.order(Column("created_at")).fetchAll(db) }
    }
}
