import HearthCore
import Hummingbird
import NIOCore

/// Liveness, readiness and metrics for operators and their orchestrators.
struct OperationsController {
    let registry: NodeRegistry
    let metrics: GatewayMetrics

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/health") { _, _ in
            try jsonResponse(["status": "ok"])
        }
        router.get("/readyz") { _, _ in
            let counts = registry.counts()
            let ready = counts.ready > 0
            return try jsonResponse(
                [
                    "status": ready ? "ready" : "no_ready_node", "nodes_online": .integer(Int64(counts.online)),
                    "nodes_ready": .integer(Int64(counts.ready)),
                ],
                status: ready ? .ok : .serviceUnavailable
            )
        }
        router.get("/metrics") { _, _ in
            let counts = registry.counts()
            metrics.nodes(online: counts.online, ready: counts.ready)
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: metrics.render()))
            )
        }
    }
}
