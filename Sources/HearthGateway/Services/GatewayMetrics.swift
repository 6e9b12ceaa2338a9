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

    init() {
        nodesOnline = registry.makeGauge(name: "hearth_nodes_online", help: "Nodes with a live link")
        nodesReady = registry.makeGauge(name: "hearth_nodes_ready", help: "Nodes with at least one ready model")
        streamsInFlight = registry.makeGauge(name: "hearth_streams_in_flight", help: "Streaming responses being relayed")
    }

    /// Counts one finished request and its duration.
    func requestFinished(route: String, status: Int, duration: Duration) {
        let labels = [("route", route), ("status", String(status))]
        registry.makeCounter(name: "hearth_http_requests_total", labels: labels, help: "HTTP requests by route and status").increment()
        registry.makeDurationHistogram(
            name: "hearth_http_request_duration_seconds",
            labels: [("route", route)],
            buckets: Self.latencyBuckets,
            help: "Request latency by route"
        ).record(duration)
    }

    /// Records the time from receiving a request to the node's first byte.
    func timeToFirstToken(model: String, duration: Duration) {
        registry.makeDurationHistogram(
            name: "hearth_time_to_first_token_seconds",
            labels: [("model", model)],
            buckets: Self.latencyBuckets,
            help: "Time to the first byte from the node"
        ).record(duration)
    }

    /// Adds metered tokens for `model`.
    func tokens(model: String, prompt: Int, completion: Int) {
        // A counter traps on a negative step: counts are bounded before they come here (`UsageBounds`), and again here.
        registry.makeCounter(name: "hearth_tokens_total", labels: [("model", model), ("direction", "in")], help: "Tokens metered")
            .increment(by: Int64(max(0, prompt)))
        registry.makeCounter(name: "hearth_tokens_total", labels: [("model", model), ("direction", "out")], help: "Tokens metered")
            .increment(by: Int64(max(0, completion)))
    }

    /// Counts a receipt: `credited`, or refused with its reason (a fixed set of codes).
    func receipt(credited: Bool, reason: String = "") {
        let labels = credited ? [("result", "credited")] : [("result", "refused"), ("reason", reason)]
        registry.makeCounter(name: "hearth_receipts_total", labels: labels, help: "Node receipts credited or refused").increment()
    }

    /// Adds tokens credited to contributing nodes, and tokens consumed by each identity class.
    func reciprocity(contributed: Int, consumed: Int, identity: String) {
        if contributed > 0 {
            registry.makeCounter(name: "hearth_tokens_contributed_total", help: "Tokens in credited receipts").increment(by: Int64(contributed))
        }
        if consumed > 0 {
            registry.makeCounter(name: "hearth_tokens_consumed_total", labels: [("identity", identity)], help: "Tokens used, by identity class")
                .increment(by: Int64(consumed))
        }
    }

    /// Counts a request refused for its token quota, by identity class (`anonymous` or `account`).
    func quotaRefused(identity: String) {
        registry.makeCounter(name: "hearth_quota_refusals_total", labels: [("identity", identity)], help: "Requests over their token quota")
            .increment()
    }

    /// Pools by state (every state listed, zeros included, so a dashboard sees a pool leave a state).
    func pools(_ counts: [PoolState: Int]) {
        for state in PoolState.allCases {
            registry.makeGauge(name: "hearth_pools", labels: [("state", state.rawValue)], help: "Pools by state").set(Int64(counts[state] ?? 0))
        }
    }

    func poolIncident(_ kind: PoolIncident.Kind) {
        registry.makeCounter(name: "hearth_pool_incidents_total", labels: [("kind", kind.rawValue)], help: "Pool incidents by kind").increment()
    }

    func streamStarted() { streamsInFlight.increment() }

    /// A spot check's result: `pass`, `fail` or `inconclusive`.
    func spotCheck(result: String) {
        registry.makeCounter(name: "hearth_spot_checks_total", labels: [("result", result)], help: "Spot checks of node answers by result")
            .increment()
    }

    /// A spot check waited for a checker to be free (all were busy or loading).
    func spotCheckWaited() {
        registry.makeCounter(name: "hearth_spot_check_waits_total", help: "Spot checks that waited for a free checker").increment()
    }

    /// A stream whose node broke was continued on another node.
    func continued() {
        registry.makeCounter(name: "hearth_stream_continuations_total", help: "Streams continued on another node after theirs broke").increment()
    }
    func streamEnded() { streamsInFlight.decrement() }

    func nodes(online: Int, ready: Int) {
        nodesOnline.set(Double(online))
        nodesReady.set(Double(ready))
    }

    /// The Prometheus text exposition.
    package func render() -> [UInt8] { registry.emitToBuffer() }
}
