/// A node as the pool planner sees it: what it lends, and how far it is from the gateway.
package struct PoolCandidate: Sendable, Equatable {
    package var id: NodeID
    package var offer: PoolOffer
    /// Smoothed round trip to the gateway, when measured.
    package var latencyMilliseconds: Double?
    package var draining: Bool

    package init(id: NodeID, offer: PoolOffer, latencyMilliseconds: Double? = nil, draining: Bool = false) {
        self.id = id
        self.offer = offer
        self.latencyMilliseconds = latencyMilliseconds
        self.draining = draining
    }
}

/// One pool's layout: which node runs the head (`llama-server --rpc`, the first `head.layers` layers on its own CPU)
/// and which run a `ggml-rpc-server` for the rest, in llama.cpp's device order.
package struct PoolPlan: Codable, Sendable, Equatable {
    package struct Share: Codable, Sendable, Equatable {
        package var node: NodeID
        /// Transformer blocks this node computes (and holds the weights and KV cache of).
        package var layers: Int
        /// What the share costs the node in memory, by the sizer.
        package var memoryBytes: UInt64

        package init(node: NodeID, layers: Int, memoryBytes: UInt64) {
            self.node = node
            self.layers = layers
            self.memoryBytes = memoryBytes
        }
    }

    package var model: ModelID
    package var sha256: SHA256Digest
    /// Tokens per slot, and slots, of the head's engine.
    package var context: Int
    package var slots: Int
    package var build: EngineBuild
    package var head: Share
    /// The rpc-servers, as `RPC0`, `RPC1`, … in the head's `--device` list.
    package var members: [Share]

    package init(model: ModelID, sha256: SHA256Digest, context: Int, slots: Int, build: EngineBuild, head: Share, members: [Share]) {
        self.model = model
        self.sha256 = sha256
        self.context = context
        self.slots = slots
        self.build = build
        self.head = head
        self.members = members
    }

    /// Every node in the pool, head first.
    package var nodes: [NodeID] { [head.node] + members.map(\.node) }

    package var totalLayers: Int { head.layers + members.reduce(0) { $0 + $1.layers } }

    /// The share `node` holds, if it is in the pool.
    package func share(of node: NodeID) -> Share? {
        node == head.node ? head : members.first { $0.node == node }
    }

    /// The head's engine arguments that make this split: the RPC devices in plan order with their layer counts as
    /// the tensor split, and every layer but the head's own offloaded to them. `endpoints` are the loopback
    /// addresses that reach each member, in the same order.
    package func engineArguments(endpoints: [String]) -> [String] {
        precondition(endpoints.count == members.count, "one endpoint per member")
        return [
            // `--rpc` is parsed in argv order: it must come before `--device`.
            "--rpc", endpoints.joined(separator: ","),
            "--device", members.indices.map { "RPC\($0)" }.joined(separator: ","),
            "--split-mode", "layer",
            // llama.cpp counts the output as one more layer after the last block and gives it to the last device;
            // it takes a slot in the split so that every member gets exactly its blocks.
            "--tensor-split",
            members.enumerated().map { String($1.layers + ($0 == members.count - 1 ? 1 : 0)) }
                .joined(separator: ","),
            "--n-gpu-layers", String(totalLayers - head.layers + 1),
            // ...but its weights stay on the head (the planner sized them there): the last member then sends back
            // n_embd floats per token instead of n_vocab logits (2.3 KiB instead of 192 KiB for SmolLM2), and does
            // not hold a copy of a tied embedding matrix. Anchored: `attn_output.weight` must not match.
            "--override-tensor", #"^output(_norm)?\.(weight|bias)$=CPU,^token_embd\.weight$=CPU"#,
            // No host-RAM prompt cache (8 GiB by default): saving a slot would pull the members' KV cache back over
            // the relay at every new prompt, into memory the plan never gave the head.
            "--cache-ram", "0",
        ]
    }
}

/// Why no pool could be planned.
package enum PoolPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    case notPinned(ModelID)
    /// No node lends memory with a build that can be pooled.
    case noCandidates
    /// The candidates together cannot hold it: they could take `layers` of `needed` blocks.
    case tooSmall(layers: Int, needed: Int, nodes: Int)
    /// The memory is there, but no node that could hold a head's share can run one.
    case noHead
    /// The operator's list names a node that does not lend memory now.
    case unavailable(NodeID)

    package var description: String {
        switch self {
        case .notPinned(let model): "\(model) is not pinned in the catalog, so it is never loaded"
        case .noCandidates: "no node lends memory to pools now"
        case .tooSmall(let layers, let needed, let nodes):
            "the \(nodes) node\(nodes == 1 ? "" : "s") lending memory can hold \(layers) of its \(needed) layers"
        case .noHead: "no node that could hold the head's share can run a head (it needs the model file)"
        case .unavailable(let node): "node \(node.short) does not lend memory to pools now (not linked, draining or not opted in)"
        }
    }
}

/// Plans a pool for one catalog model over a registry snapshot, as a pure function.
///
/// Memory: every node in the pool pays its own compute buffer and runtime (`ModelSizer`); the head pays them too,
/// plus two layers' worth for the input embeddings and output it keeps. What is left of the node's lent memory holds
/// whole layers, each costing (weights + KV cache) / layers. Layers are then shared in proportion to that room.
///
/// Choice, in order: the fewest nodes; then the lowest summed latency to the gateway (every token crosses each
/// member's link); then nodes whose rpc cache already holds the model; then the most room. Never a draining node,
/// never a node the caller excludes (recently lost: hysteresis), and all of one engine build.
package enum PoolPlanner {
    /// llama.cpp takes at most 16 `--tensor-split` values; the head's CPU is not one of them.
    package static let maxMembers = 16
    /// Past this many candidate sets the planner takes the roomiest nodes instead of searching.
    static let searchLimit = 20_000

    package static func plan(
        entry: CatalogEntry,
        context: Int,
        slots: Int,
        candidates: [PoolCandidate],
        excluding excluded: Set<NodeID> = [],
        only required: [NodeID]? = nil,
        maxNodes: Int = CapacityPlanner.defaultMaxPoolSize
    ) -> Result<PoolPlan, PoolPlanError> {
        guard let sha256 = entry.sha256 else { return .failure(.notPinned(entry.id)) }
        let estimate = ModelSizer.estimate(entry, context: context, parallel: slots)
        let layers = max(entry.shape.layers, 1)
        let costs = Costs(estimate: estimate, layers: layers)
        var usable = candidates.filter { !$0.draining && !excluded.contains($0.id) && $0.offer.memoryBytes > 0 }
        if let required {
            for node in required where !usable.contains(where: { $0.id == node }) { return .failure(.unavailable(node)) }
            usable = usable.filter { required.contains($0.id) }
        }
        guard !usable.isEmpty else { return .failure(.noCandidates) }
        let limit = min(max(maxNodes, 2), maxMembers + 1)
        var best: (plan: PoolPlan, score: Score)?
        var closest: PoolPlanError = .noHead
        // Builds are never mixed: plan within each, keep the best.
        for build in Set(usable.map(\.offer.build)).sorted(by: { $0.description < $1.description }) {
            let group = usable.filter { $0.offer.build == build }.sorted { costs.capacity($0, head: false) > costs.capacity($1, head: false) }
            let sizes: ClosedRange<Int>
            if required != nil {
                sizes = group.count...group.count
            } else {
                // The fewest nodes that could hold it, by room alone, is where the search starts.
                var room = 0
                var fewest = group.count + 1
                for (index, node) in group.enumerated() {
                    room += costs.capacity(node, head: false)
                    if room >= layers {
                        fewest = index + 1
                        break
                    }
                }
                guard fewest <= min(group.count, limit) else {
                    let reach = group.prefix(limit).reduce(0) { $0 + costs.capacity($1, head: false) }
                    closest = .tooSmall(layers: min(reach, layers), needed: layers, nodes: group.count)
                    continue
                }
                // A pool is two nodes at least: one node of its build, however large, makes none (as an operator's
                // list of one does, below). The range 2...1 trapped here: `hearth up` crashed on a request that came
                // while its one node's engine loaded, when the gateway asked whether a pool could serve it meanwhile.
                guard group.count >= 2 else {
                    closest = .tooSmall(layers: 0, needed: layers, nodes: group.count)
                    continue
                }
                sizes = max(fewest, 2)...min(group.count, limit)
            }
            guard sizes.lowerBound >= 2 else { continue }
            var found = false
            for size in sizes where !found {
                for set in combinations(of: group, size: size) {
                    guard let plan = layout(set, costs: costs, entry: entry, sha256: sha256, context: context, slots: slots, build: build) else {
                        continue
                    }
                    found = true
                    let score = Score(plan: plan, candidates: set)
                    if best.map({ score < $0.score }) ?? true { best = (plan, score) }
                }
            }
        }
        if let best { return .success(best.plan) }
        if required != nil, usable.count < 2 { return .failure(.tooSmall(layers: 0, needed: layers, nodes: usable.count)) }
        return .failure(closest)
    }

    /// What a share costs.
    struct Costs {
        var perNode: UInt64
        var headExtra: UInt64
        var perLayer: UInt64

        init(estimate: MemoryEstimate, layers: Int) {
            perNode = estimate.computeBytes.addingSaturated(estimate.runtimeBytes)
            perLayer = max(estimate.weightsBytes.addingSaturated(estimate.kvCacheBytes) / UInt64(layers), 1)
            headExtra = perNode.addingSaturated((estimate.weightsBytes / UInt64(layers)).multipliedSaturated(by: 2))
        }

        /// Whole layers the node has room for.
        func capacity(_ node: PoolCandidate, head: Bool) -> Int {
            let fixed = head ? headExtra : perNode
            guard node.offer.memoryBytes > fixed else { return 0 }
            return Int(clamping: (node.offer.memoryBytes - fixed) / perLayer)
        }

        func memory(layers: Int, head: Bool) -> UInt64 {
            (head ? headExtra : perNode).addingSaturated(perLayer.multipliedSaturated(by: UInt64(layers)))
        }
    }

    /// The split over `set`, with the best head it allows, or `nil` when it cannot hold the model.
    static func layout(
        _ set: [PoolCandidate],
        costs: Costs,
        entry: CatalogEntry,
        sha256: SHA256Digest,
        context: Int,
        slots: Int,
        build: EngineBuild
    ) -> PoolPlan? {
        let layers = max(entry.shape.layers, 1)
        // Heads that already hold the file first, then the closest to the gateway.
        let heads = set.filter(\.offer.canHead).sorted {
            ($0.offer.files.contains(sha256) ? 0 : 1, $0.latencyMilliseconds ?? .infinity, $0.id) < (
                $1.offer.files.contains(sha256) ? 0 : 1, $1.latencyMilliseconds ?? .infinity, $1.id
            )
        }
        for head in heads {
            let members = set.filter { $0.id != head.id }.sorted {
                ($0.latencyMilliseconds ?? .infinity, $0.id) < ($1.latencyMilliseconds ?? .infinity, $1.id)
            }
            let capacities = [costs.capacity(head, head: true)] + members.map { costs.capacity($0, head: false) }
            // Every member holds at least one layer; the head may hold none.
            guard capacities.dropFirst().allSatisfy({ $0 >= 1 }), capacities.reduce(0, +) >= layers,
                let split = split(layers: layers, capacities: capacities)
            else { continue }
            let shares = zip([head] + members, split).enumerated().map { index, pair in
                PoolPlan.Share(node: pair.0.id, layers: pair.1, memoryBytes: costs.memory(layers: pair.1, head: index == 0))
            }
            return PoolPlan(
                model: entry.id,
                sha256: sha256,
                context: context,
                slots: slots,
                build: build,
                head: shares[0],
                members: Array(shares.dropFirst())
            )
        }
        return nil
    }

    /// `layers` shared in proportion to each node's room, never over it, each member (all but the first) at least
    /// one: proportional floors first, then the rest one by one to the largest remainder that still has room.
    package static func split(layers: Int, capacities: [Int]) -> [Int]? {
        let total = capacities.reduce(0, +)
        guard total >= layers, !capacities.isEmpty else { return nil }
        var shares = capacities.map { min($0, layers * $0 / max(total, 1)) }
        for index in shares.indices.dropFirst() where shares[index] == 0 { shares[index] = 1 }
        while shares.reduce(0, +) > layers {
            // Floors of one forced up can overshoot: take back from the largest share above its minimum.
            guard let index = shares.indices.filter({ shares[$0] > ($0 == 0 ? 0 : 1) }).max(by: { shares[$0] < shares[$1] }) else { return nil }
            shares[index] -= 1
        }
        while shares.reduce(0, +) < layers {
            let open = shares.indices.filter { shares[$0] < capacities[$0] }
            // Largest remainder: the node furthest below its proportional share.
            guard
                let index = open.max(by: {
                    Double(layers) * Double(capacities[$0]) / Double(total) - Double(shares[$0]) < Double(layers) * Double(capacities[$1])
                        / Double(total)
                        - Double(shares[$1])
                })
            else { return nil }
            shares[index] += 1
        }
        return shares
    }

    /// How good a plan is; smaller is better.
    struct Score: Comparable {
        var nodes: Int
        var latency: Double
        var uncached: Int
        var slack: Int
        var ids: [String]

        init(plan: PoolPlan, candidates: [PoolCandidate]) {
            nodes = plan.nodes.count
            latency = candidates.reduce(0) { $0 + ($1.latencyMilliseconds ?? 1_000) }
            uncached = candidates.filter { !$0.offer.cached.contains(plan.sha256) && !$0.offer.files.contains(plan.sha256) }.count
            slack = -candidates.reduce(0) { $0 + Int(clamping: $1.offer.memoryBytes / (1 << 20)) }
            ids = candidates.map(\.id.rawValue).sorted()
        }

        static func < (lhs: Score, rhs: Score) -> Bool {
            if lhs.nodes != rhs.nodes { return lhs.nodes < rhs.nodes }
            // Latencies within a millisecond count as equal, so the cache decides between near neighbours.
            if abs(lhs.latency - rhs.latency) >= 1 { return lhs.latency < rhs.latency }
            if lhs.uncached != rhs.uncached { return lhs.uncached < rhs.uncached }
            if lhs.slack != rhs.slack { return lhs.slack < rhs.slack }
            return lhs.ids.lexicographicallyPrecedes(rhs.ids)
        }
    }

    /// Every `size`-subset of `items` (in order), or only the first `size` when there would be too many to search.
    static func combinations<T>(of items: [T], size: Int) -> [[T]] {
        guard size > 0, size <= items.count else { return [] }
        var count = 1.0
        for step in 0..<size { count *= Double(items.count - step) / Double(step + 1) }
        if count > Double(searchLimit) { return [Array(items.prefix(size))] }
        var result: [[T]] = []
        var indices = Array(0..<size)
        while true {
            result.append(indices.map { items[$0] })
            var position = size - 1
            while position >= 0, indices[position] == items.count - size + position { position -= 1 }
            guard position >= 0 else { return result }
            indices[position] += 1
            for next in (position + 1)..<size { indices[next] = indices[next - 1] + 1 }
        }
    }
}

extension UInt64 {
    /// `self × factor`, or `UInt64.max` when that overflows.
    func multipliedSaturated(by factor: UInt64) -> UInt64 {
        let (value, overflow) = multipliedReportingOverflow(by: factor)
        return overflow ? .max : value
    }
}
