import HearthCore
import Prometheus
import Synchronization

/// The gateway's Prometheus metrics. Labels are bounded: route templates, status codes, model ids of announced models.
///
/// The gateway owns its registry instead of bootstrapping the global `MetricsSystem`, so that several gateways
/// (tests, `hearth up`) can live in one process and each `/metrics` shows only its own.
package final class GatewayMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    private let nodesOnline: Gauge
    private let nodesReady: Gauge
    private let streamsInFlight: Gauge
    private static let latencyBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300),
    ]

    /// `hearth_<metric>_<unit>` (no unit: `hearth_<metric>`), with its help line.
    private static func hearth(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "hearth", metricName: metric, unitName: unit, helpText: help)
    }

    init() {
        nodesOnline = registry.makeGauge(descriptor: Self.hearth("nodes", "online", "Nodes with a live link"))
        nodesReady = registry.makeGauge(descriptor: Self.hearth("nodes", "ready", "Nodes with at least one ready model"))
        streamsInFlight = registry.makeGauge(descriptor: Self.hearth("streams", "in_flight", "Streaming responses being relayed"))
    }

    /// Counts one finished request and its duration.
    func requestFinished(route: String, status: Int, duration: Duration) {
        let labels = [("route", route), ("status", String(status))]
        registry.makeCounter(descriptor: Self.hearth("http_requests", "total", "HTTP requests by route and status"), labels: labels).increment()
        registry.makeDurationHistogram(
            descriptor: Self.hearth("http_request_duration", "seconds", "Request latency by route"),
            labels: [("route", route)],
            buckets: Self.latencyBuckets
        ).record(duration)
    }

    /// Records the time from receiving a request to the node's first byte.
    func timeToFirstToken(model: String, duration: Duration) {
        registry.makeDurationHistogram(
            descriptor: Self.hearth("time_to_first_token", "seconds", "Time to the first byte from the node"),
            labels: [("model", model)],
            buckets: Self.latencyBuckets
        ).record(duration)
    }

    /// Adds metered tokens for `model`.
    func tokens(model: String, prompt: Int, completion: Int) {
        // A counter traps on a negative step: counts are bounded before they come here (`UsageBounds`), and again here.
        let metered = Self.hearth("tokens", "total", "Tokens metered")
        registry.makeCounter(descriptor: metered, labels: [("model", model), ("direction", "in")]).increment(by: Int64(max(0, prompt)))
        registry.makeCounter(descriptor: metered, labels: [("model", model), ("direction", "out")]).increment(by: Int64(max(0, completion)))
    }

    /// Counts a receipt: `credited`, or refused with its reason (a fixed set of codes).
    func receipt(credited: Bool, reason: String = "") {
        let labels = credited ? [("result", "credited")] : [("result", "refused"), ("reason", reason)]
        registry.makeCounter(descriptor: Self.hearth("receipts", "total", "Node receipts credited or refused"), labels: labels).increment()
    }

    /// Adds tokens credited to contributing nodes, and tokens consumed by each identity class.
    func reciprocity(contributed: Int, consumed: Int, identity: String) {
        if contributed > 0 {
            registry.makeCounter(descriptor: Self.hearth("tokens_contributed", "total", "Tokens in credited receipts"))
                .increment(by: Int64(contributed))
        }
        if consumed > 0 {
            registry.makeCounter(
                descriptor: Self.hearth("tokens_consumed", "total", "Tokens used, by identity class"),
                labels: [("identity", identity)]
            ).increment(by: Int64(consumed))
        }
    }

    /// Counts a request refused for its token quota, by identity class (`anonymous` or `account`).
    func quotaRefused(identity: String) {
        registry.makeCounter(
            descriptor: Self.hearth("quota_refusals", "total", "Requests over their token quota"),
            labels: [("identity", identity)]
        ).increment()
    }

    /// Pools by state (every state listed, zeros included, so a dashboard sees a pool leave a state).
    func pools(_ counts: [PoolState: Int]) {
        for state in PoolState.allCases {
            registry.makeGauge(descriptor: Self.hearth("pools", "", "Pools by state"), labels: [("state", state.rawValue)])
                .set(Int64(counts[state] ?? 0))
        }
    }

    func poolIncident(_ kind: PoolIncident.Kind) {
        registry.makeCounter(descriptor: Self.hearth("pool_incidents", "total", "Pool incidents by kind"), labels: [("kind", kind.rawValue)])
            .increment()
    }

    func streamStarted() { streamsInFlight.increment() }

    /// A spot check's result: `pass`, `fail` or `inconclusive`.
    func spotCheck(result: String) {
        registry.makeCounter(
            descriptor: Self.hearth("spot_checks", "total", "Spot checks of node answers by result"),
            labels: [("result", result)]
        ).increment()
    }

    /// A spot check waited for a checker to be free (all were busy or loading).
    func spotCheckWaited() {
        registry.makeCounter(descriptor: Self.hearth("spot_check_waits", "total", "Spot checks that waited for a free checker")).increment()
    }

    /// A stream whose node broke was continued on another node.
    func continued() {
        registry.makeCounter(
            descriptor: Self.hearth("stream_continuations", "total", "Streams continued on another node after theirs broke")
        ).increment()
    }
    func streamEnded() { streamsInFlight.decrement() }

    func nodes(online: Int, ready: Int) {
        nodesOnline.set(Double(online))
        nodesReady.set(Double(ready))
    }

    /// The Prometheus text exposition.
    package func render() -> [UInt8] { registry.emitToBuffer() }
}
