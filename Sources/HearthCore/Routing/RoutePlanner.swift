/// A node as the router sees it at one instant.
package struct RoutableNode: Sendable, Equatable {
    package var id: NodeID
    package var models: [ServedModel]
    var parallelSlots: Int
    /// Requests the gateway has in flight on this node.
    package var inFlight: Int
    /// Smoothed recent latency to first byte, in seconds; `nil` before the first request.
    var recentLatency: Double?
    package var draining: Bool
    /// Receipts from this node the gateway refused since it linked: its reputation.
    var refusedReceipts: Int
    /// Smoothed time between the tokens of its streams, in seconds; `nil` before the first stream.
    var interTokenLatency: Double?
    /// Smoothed share of its recent requests that neither broke nor failed before their first byte (1 to start).
    package var successRate: Double
    /// What spot checks of its answers say, 0 ... 1 (1 to start).
    var spotCheckReputation: Double
    /// Out of routing for now, after failing too often (`OutlierDetector`).
    var ejected: Bool

    package init(
        id: NodeID,
        models: [ServedModel],
        parallelSlots: Int,
        inFlight: Int,
        recentLatency: Double?,
        draining: Bool,
        refusedReceipts: Int = 0,
        interTokenLatency: Double? = nil,
        successRate: Double = 1,
        spotCheckReputation: Double = 1,
        ejected: Bool = false
    ) {
        self.id = id
        self.models = models
        self.parallelSlots = parallelSlots
        self.inFlight = inFlight
        self.recentLatency = recentLatency
        self.draining = draining
        self.refusedReceipts = refusedReceipts
        self.interTokenLatency = interTokenLatency
        self.successRate = successRate
        self.spotCheckReputation = spotCheckReputation
        self.ejected = ejected
    }

    /// The served model that `name` names exactly, by id or by a declared alias.
    package func model(named name: ModelID) -> ServedModel? {
        models.first { $0.id == name || $0.aliases.contains(name) }
    }
}

/// Where a request for a model can go.
package enum RoutePlan: Sendable, Equatable {
    /// No node has ever announced this model name.
    case unknownModel
    /// Some node announced the model, but none is ready to serve it now.
    case noReadyNode
    /// Every node that announced the model reports it failed: none is loading it either.
    case failedEverywhere
    /// Ready nodes, best first, with the canonical model id they serve it under.
    case candidates([NodeID], canonical: ModelID)
}

/// The routing decision, as a pure function of a registry snapshot.
package enum RoutePlanner {
    /// Orders the nodes that can serve `model`: those with it loaded before those that would load it on demand
    /// (standby, which costs a load and evicts idle models); within each, by `RoutingScore`, highest first, then node id.
    /// Ejected nodes (`OutlierDetector`) are left out while another node can serve.
    ///
    /// Busy nodes stay in the list, with a low score: llama-server queues the request. A node with refused receipts
    /// or a poor success rate still serves when no other can.
    package static func plan(model: ModelID, nodes: [RoutableNode]) -> RoutePlan {
        var known = false
        var allFailed = true
        var ready: [(node: RoutableNode, canonical: ModelID, warm: Bool, score: Double)] = []
        for node in nodes {
            guard let served = node.model(named: model) else { continue }
            known = true
            if served.state != .failed { allFailed = false }
            if (served.state == .ready || served.state == .standby) && !node.draining {
                ready.append((node, served.id, served.state == .ready, RoutingScore(node).value))
            }
        }
        guard known else { return .unknownModel }
        guard let first = ready.first else { return allFailed ? .failedEverywhere : .noReadyNode }
        if ready.contains(where: { !$0.node.ejected }) { ready.removeAll { $0.node.ejected } }
        let ordered = ready.sorted { lhs, rhs in
            if lhs.warm != rhs.warm { return lhs.warm }
            if lhs.score != rhs.score { return lhs.score > rhs.score }
            return lhs.node.id < rhs.node.id
        }
        return .candidates(ordered.map(\.node.id), canonical: first.canonical)
    }

    /// As `plan(model:nodes:)`, and when no node knows the name exactly, the catalog's choice for it: a name without
    /// quantization (`qwen2.5-7b-instruct`) stands for its Q8_0 if some node can serve that, else for an approved
    /// lower quantization that a node serves (`Catalog.resolve`).
    package static func plan(model: ModelID, nodes: [RoutableNode], catalog: Catalog) -> RoutePlan {
        let exact = plan(model: model, nodes: nodes)
        guard exact == .unknownModel else { return exact }
        let served = catalog.resolve(model) { entry in
            if case .candidates = plan(model: entry.id, nodes: nodes) { return true }
            return false
        }
        guard let served else { return .unknownModel }
        return plan(model: served.id, nodes: nodes)
    }
}
