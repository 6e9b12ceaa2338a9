import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOFoundationEssentialsCompat

/// Where operators list the nodes. Nodes themselves never call the API: they report over their links.
struct NodesController {
    let registry: NodeRegistry

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/nodes") { _, _ in
            // Each node's report, with its reputation (receipts of its the gateway refused) and its routing score with
            // the parts it is the product of (docs/ROUTING.md).
            let refused = registry.refusedReceipts()
            let nodes = try registry.announcements().map { announcement -> JSONValue in
                var node = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(announcement))
                // Every model from an owner's own server says whether this gateway routes to it.
                if var models = node["models"]?.arrayValue {
                    for (index, model) in announcement.models.enumerated() where model.backend != nil && models.indices.contains(index) {
                        models[index]["backend"]?["routed"] = .bool(registry.routes(model))
                    }
                    node["models"] = .array(models)
                }
                node["refusedReceipts"] = .integer(Int64(refused[announcement.nodeID] ?? 0))
                if let joined = registry.joined(announcement.nodeID) {
                    node["linkedSince"] = .string(joined.formatted(.iso8601))
                    node["linkedForSeconds"] = .integer(Int64(max(0, Date().timeIntervalSince(joined))))
                }
                if let roundTrip = registry.roundTrip(of: announcement.nodeID) {
                    node["linkRoundTripMilliseconds"] = .number(roundTrip)
                }
                if let routing = registry.routing(of: announcement.nodeID) {
                    node["routing"] = [
                        "score": .number(routing.score.value), "capacity": .number(routing.score.capacity),
                        "latency": .number(routing.score.latency), "pace": .number(routing.score.pace),
                        "reliability": .number(routing.score.reliability), "reputation": .number(routing.score.reputation),
                        "successRate": .number(routing.successRate), "ejections": .integer(Int64(routing.ejections)),
                        "ejectedForSeconds": routing.ejectedForSeconds.map { .number($0) } ?? .null,
                        // Requests this gateway has open on the node now (the node's own report says `inFlight` too, as of
                        // its last report).
                        "inFlight": .integer(Int64(routing.inFlight)),
                    ]
                    let spot = registry.spotCheckStanding(of: announcement.nodeID)
                    node["spotChecks"] = ["reputation": .number(spot.reputation), "checked": .integer(Int64(spot.checked))]
                }
                return node
            }
            return try jsonResponse(.array(nodes))
        }
    }
}
