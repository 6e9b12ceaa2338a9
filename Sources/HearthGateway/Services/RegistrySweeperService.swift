import AsyncAlgorithms
import HearthCore
import Logging
import ServiceLifecycle

/// Drops nodes whose reports stopped, so routing and `/v1/models` forget them after the TTL.
struct RegistrySweeperService: Service {
    let registry: NodeRegistry
    let metrics: GatewayMetrics
    let interval: Duration
    let logger: Logger

    func run() async throws {
        for await _ in AsyncTimerSequence(interval: interval, clock: .continuous).cancelOnGracefulShutdown() {
            for id in registry.expire() {
                logger.info("node left: no report within the TTL", metadata: ["node.id": "\(id.short)"])
            }
            let counts = registry.counts()
            metrics.nodes(online: counts.online, ready: counts.ready)
        }
    }
}
