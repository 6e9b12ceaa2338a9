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
            // Each node's report, with its reputation: receipts of its the gateway refused.
            let refused = registry.refusedReceipts()
            let nodes = try registry.announcements().map { announcement -> JSONValue in
                var node = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(announcement))
                node["refusedReceipts"] = .integer(Int64(refused[announcement.nodeID] ?? 0))
                return node
            }
            return try jsonResponse(.array(nodes))
        }
    }
}
