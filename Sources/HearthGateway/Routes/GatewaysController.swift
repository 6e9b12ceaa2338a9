import Foundation
import HearthCore
import Hummingbird

/// `GET /api/gateways`: the live gateways sharing this database (of this gateway's network), from their heartbeats:
/// id, mesh address, the models their nodes serve, node count, heartbeat age; and `join`, the join string that lists
/// every one of them (`a:7070,b:7070#net:<network id>`), for node owners. A gateway alone lists itself only once it
/// shares a database or a network (a lone gateway keeps no directory).
struct GatewaysController {
    let database: GatewayDatabase
    let gateway: NodeID
    let network: NodeID?
    let ttl: Double

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/gateways") { _, _ in
            let now = Date().timeIntervalSince1970
            let live = try await database.liveGateways(network: (network ?? gateway).rawValue, since: now - ttl)
            let rows = live.map { row -> JSONValue in
                [
                    "id": .string(row.id), "mesh": .string(row.mesh), "models": .array(row.models.map { .string($0) }),
                    "nodes": .integer(Int64(row.nodes)), "heartbeat_age_seconds": .number((now - row.heartbeatAt).rounded()),
                    "self": .bool(row.id == gateway.rawValue),
                ]
            }
            var answer: JSONValue = [
                "gateway": .string(gateway.rawValue), "network": network.map { .string($0.rawValue) } ?? .null, "data": .array(rows),
            ]
            if let network, !live.isEmpty {
                answer["join"] = .string(live.map(\.mesh).joined(separator: ",") + "#net:\(network.rawValue)")
            }
            return try jsonResponse(answer)
        }
    }
}
