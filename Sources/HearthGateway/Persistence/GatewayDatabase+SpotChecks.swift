import Foundation
import HearthCore
import HearthStore

/// One spot check of a node's answer (docs/ROUTING.md, "Spot checks").
struct SpotCheckRecord: Codable, Sendable, Equatable {
    /// The checked request, the node that answered it and the node whose model scored the answer.
    var requestID: String
    var nodeID: String
    var checkerID: String
    var model: String
    var tokens: Int
    var meanLogprob: Double
    var outsideTopK: Double
    /// `pass`, `fail`, or `inconclusive` (no other node, or its answer did not follow the claimed tokens or text).
    var result: String
    var reason: String?
    var createdAt: Date

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
    static let spotCheckMigration = Migration(
        "v8-spot-checks",
        [
            """
            CREATE TABLE spot_checks (id {autoincrement}, request_id TEXT NOT NULL, node_id TEXT NOT NULL, checker_id TEXT NOT NULL,
                model TEXT NOT NULL, tokens {integer} NOT NULL, mean_logprob {double} NOT NULL, outside_top_k {double} NOT NULL,
                result TEXT NOT NULL, reason TEXT, created_at {datetime} NOT NULL)
            """,
            "CREATE INDEX spot_checks_on_node_id ON spot_checks (node_id)",
        ]
    )

    func record(_ check: SpotCheckRecord) async throws {
        try await store.write { session in
            try session.execute(
                """
                INSERT INTO spot_checks (request_id, node_id, checker_id, model, tokens, mean_logprob, outside_top_k, result, reason, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                check.requestID,
                check.nodeID,
                check.checkerID,
                check.model,
                check.tokens,
                check.meanLogprob,
                check.outsideTopK,
                check.result,
                check.reason,
                check.createdAt
            )
        }
    }

    /// The most recent spot checks, newest first; of one node when `node` is given.
    func spotChecks(of node: NodeID? = nil, limit: Int = 100) async throws -> [SpotCheckRecord] {
        try await store.read { session in
            let rows =
                if let node {
                    try session.query("SELECT * FROM spot_checks WHERE node_id = ? ORDER BY id DESC LIMIT ?", node.rawValue, limit)
                } else {
                    try session.query("SELECT * FROM spot_checks ORDER BY id DESC LIMIT ?", limit)
                }
            return try rows.map { row in
                SpotCheckRecord(
                    requestID: try row.string("request_id"),
                    nodeID: try row.string("node_id"),
                    checkerID: try row.string("checker_id"),
                    model: try row.string("model"),
                    tokens: try row.int("tokens"),
                    meanLogprob: try row.double("mean_logprob"),
                    outsideTopK: try row.double("outside_top_k"),
                    result: try row.string("result"),
                    reason: row.optionalString("reason"),
                    createdAt: try row.date("created_at")
                )
            }
        }
    }
}
