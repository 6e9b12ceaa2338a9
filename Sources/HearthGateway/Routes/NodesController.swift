import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOFoundationEssentialsCompat

/// Where nodes announce themselves and send heartbeats, and where operators list them.
///
/// In this release the announcement is trusted as sent; the secure mesh binds it to a proven key.
struct NodesController {
    let registry: NodeRegistry
    let maxBodyBytes: Int

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/internal/v1/nodes/heartbeat") { request, context in
            let buffer = try await request.body.collect(upTo: maxBodyBytes)
            let announcement: NodeAnnouncement
            do {
                announcement = try JSONDecoder().decode(NodeAnnouncement.self, from: buffer)
            } catch {
                throw OpenAIError(.invalidRequest, "The announcement is not valid: \(error)", code: "invalid_announcement")
            }
            guard announcement.endpoint.hasPrefix("http://") || announcement.endpoint.hasPrefix("https://") else {
                throw OpenAIError(.invalidRequest, "The node endpoint must be an http(s) URL.", param: "endpoint")
            }
            if registry.upsert(announcement) {
                context.logger.info(
                    "node joined",
                    metadata: [
                        "node.id": "\(announcement.nodeID.short)", "node.name": "\(announcement.name)",
                        "node.models": "\(announcement.models.map(\.id.rawValue))",
                    ]
                )
            }
            return Response(status: .noContent)
        }
        router.get("/api/nodes") { _, _ in
            let data = try JSONEncoder().encode(registry.announcements())
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: .init(bytes: data)))
        }
    }
}
