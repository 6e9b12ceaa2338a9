import Foundation
import HearthStore

/// The gateways sharing a database, each with a heartbeat: where nodes reach it, what its nodes serve now. A row
/// whose heartbeat is older than the TTL is a gateway that went away (docs/SCALE-OUT.md).
struct GatewayRecord: Sendable, Equatable {
    var id: String
    /// The network's id (its key's), or the gateway's own id when it belongs to none.
    var network: String
    /// `host:port` of its mesh, as nodes dial it.
    var mesh: String
    /// The models its nodes serve now, and how many nodes are linked to it.
    var models: [String]
    var nodes: Int
    var heartbeatAt: Double
    var startedAt: Double
}

extension GatewayDatabase {
    static let gatewaysMigration = Migration(
        "v13-gateways",
        [
            """
            CREATE TABLE gateways (id TEXT PRIMARY KEY NOT NULL, network TEXT NOT NULL, mesh TEXT NOT NULL, models TEXT NOT NULL,
                nodes {integer} NOT NULL, heartbeat_at {double} NOT NULL, started_at {double} NOT NULL)
            """,
            "CREATE INDEX gateways_on_network ON gateways (network)",
        ]
    )

    /// Writes this gateway's row.
    func heartbeat(_ gateway: GatewayRecord) async throws {
        try await store.write { session in
            try session.execute(
                """
                INSERT INTO gateways (id, network, mesh, models, nodes, heartbeat_at, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET network = excluded.network, mesh = excluded.mesh, models = excluded.models,
                nodes = excluded.nodes, heartbeat_at = excluded.heartbeat_at, started_at = excluded.started_at
                """,
                gateway.id,
                gateway.network,
                gateway.mesh,
                gateway.models.joined(separator: ","),
                gateway.nodes,
                gateway.heartbeatAt,
                gateway.startedAt
            )
        }
    }

    /// The gateways of `network` whose heartbeat is newer than `since`, oldest first (the order their addresses go in
    /// a join string: long-lived gateways first).
    func liveGateways(network: String, since: Double) async throws -> [GatewayRecord] {
        try await store.read { session in
            try session.query(
                "SELECT * FROM gateways WHERE network = ? AND heartbeat_at >= ? ORDER BY started_at, id",
                network,
                since
            ).map { row in
                GatewayRecord(
                    id: try row.string("id"),
                    network: try row.string("network"),
                    mesh: try row.string("mesh"),
                    models: try row.string("models").split(separator: ",").map(String.init),
                    nodes: try row.int("nodes"),
                    heartbeatAt: try row.double("heartbeat_at"),
                    startedAt: try row.double("started_at")
                )
            }
        }
    }

    /// Removes this gateway's row (a clean stop: the others need not wait for the TTL).
    func removeGateway(_ id: String) async throws {
        try await store.write { session in try session.execute("DELETE FROM gateways WHERE id = ?", id) }
    }
}
