/// How the router ranks the nodes that serve a model with it loaded (docs/ROUTING.md, "The score").
///
/// One number, the product of parts that are each in (0, 1], so that one weak part pulls a node down however good the
/// others are, and `/api/nodes` can show which part it was. A pure function of one node's routing view.
package struct RoutingScore: Sendable, Equatable, Codable {
    /// Free slots, as a share: `(free + 1) / (slots + 1)`. A busy node keeps a little (its engine queues), and an idle
    /// one-slot node scores as an idle four-slot one: on a CPU the slots share the same cores.
    package var capacity: Double
    /// Time to first byte, smoothed: `1 / (1 + ttft / 2 s)`; 1 before the first request.
    package var latency: Double
    /// Time between tokens of its streams, smoothed: `1 / (1 + itl / 0.25 s)`; 1 before the first stream.
    package var pace: Double
    /// Recent success (answers neither broken nor failed before their first byte), smoothed, squared: a node that
    /// fails one request in five scores 0.64 of one that never does.
    package var reliability: Double
    /// `1 / (1 + refused receipts)`, times the spot-check reputation.
    package var reputation: Double

    /// The score: the product of the parts.
    package var value: Double { capacity * latency * pace * reliability * reputation }

    /// The time to first byte, and between tokens, that halve their parts.
    package static let latencyScale = 2.0
    package static let paceScale = 0.25

    package init(capacity: Double, latency: Double, pace: Double, reliability: Double, reputation: Double) {
        self.capacity = capacity
        self.latency = latency
        self.pace = pace
        self.reliability = reliability
        self.reputation = reputation
    }

    package init(_ node: RoutableNode) {
        let slots = max(1, node.parallelSlots)
        let free = min(slots, max(0, slots - node.inFlight))
        self.init(
            capacity: Double(free + 1) / Double(slots + 1),
            latency: 1 / (1 + max(0, node.recentLatency ?? 0) / Self.latencyScale),
            pace: 1 / (1 + max(0, node.interTokenLatency ?? 0) / Self.paceScale),
            reliability: min(1, max(0.01, node.successRate)) * min(1, max(0.01, node.successRate)),
            reputation: min(1, max(0.01, node.spotCheckReputation)) / Double(1 + max(0, node.refusedReceipts))
        )
    }
}
