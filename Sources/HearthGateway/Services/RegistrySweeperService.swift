import HearthCore
import Logging
import ServiceLifecycle

/// Drops nodes whose reports stopped, so routing and `/v1/models` forget them after the TTL, and keeps the node gauges.
///
/// It sleeps until the oldest report would pass the TTL or the registry changes, not on a timer: an idle gateway
/// wakes about once per TTL, not every second. `interval` is the shortest sleep before an expiry check.
struct RegistrySweeperService: Service {
    let registry: NodeRegistry
    let metrics: GatewayMetrics
    let interval: Duration
    let logger: Logger

    func run() async throws {
        let changes = registry.changes
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let seen = changes.generation
            for id in registry.expire() {
                logger.info("node left: no report within the TTL", metadata: ["node.id": "\(id.short)"])
            }
            let counts = registry.counts()
            metrics.nodes(online: counts.online, ready: counts.ready)
            let now = ContinuousClock.now
            let wake = max(registry.nextExpiry() ?? now + .seconds(3600), now + interval)
            await cancelWhenGracefulShutdown {
                await changes.wait(until: wake) { changes.generation != seen }
            }
        }
    }
}
