import Foundation
import HearthStore

/// A pool's definition as stored, so that it outlives a gateway restart (its plan does not: it is made again).
struct PoolRecord: Codable, Sendable, Equatable {
    var id: String
    var model: String
    /// The operator's node list, comma-separated; `nil` lets the planner choose.
    var nodes: String?
    var automatic: Bool
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case id, model, nodes, automatic
        case createdAt = "created_at"
    }
}

extension GatewayDatabase {
    static let poolMigration = Migration(
        "v7-pools",
        [
            """
            CREATE TABLE pools (id TEXT PRIMARY KEY NOT NULL, model TEXT NOT NULL, nodes TEXT, automatic BOOLEAN NOT NULL,
                created_at {datetime} NOT NULL)
            """
        ]
    )

    /// A pool runs on the nodes of the gateway that made it: gateways sharing a database each restore their own.
    static let poolGatewayMigration = Migration("v14-pools-gateway", ["ALTER TABLE pools ADD COLUMN gateway TEXT"])

    func savePool(_ pool: PoolRecord) async throws {
        let gateway = gatewayID.isEmpty ? nil : gatewayID
        try await store.write { session in
            try session.execute(
                """
                INSERT INTO pools (id, model, nodes, automatic, created_at, gateway) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET model = excluded.model, nodes = excluded.nodes, automatic = excluded.automatic,
                created_at = excluded.created_at, gateway = excluded.gateway
                """,
                pool.id,
                pool.model,
                pool.nodes,
                pool.automatic,
                pool.createdAt,
                gateway
            )
        }
    }

    func deletePool(id: String) async throws {
        try await store.write { session in try session.execute("DELETE FROM pools WHERE id = ?", id) }
    }

    /// This gateway's pools (and those stored before pools named their gateway, when one gateway used the database).
    func pools() async throws -> [PoolRecord] {
        let gateway = gatewayID
        return try await store.read { session in
            try session.query("SELECT * FROM pools WHERE gateway = ? OR gateway IS NULL OR ? = '' ORDER BY created_at", gateway, gateway).map { row in
                PoolRecord(
                    id: try row.string("id"),
                    model: try row.string("model"),
                    nodes: row.optionalString("nodes"),
                    automatic: try row.bool("automatic"),
                    createdAt: try row.date("created_at")
                )
            }
        }
    }
}
