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
            let data = try JSONEncoder().encode(registry.announcements())
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(bytes: data)))
        }
    }
}
