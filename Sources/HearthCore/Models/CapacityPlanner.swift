/// A node as the capacity planner sees it.
package struct PoolNode: Sendable, Equatable {
    var id: NodeID
    var name: String
    /// Memory the owner lets models use on this node.
    var memoryBytes: UInt64

    package init(id: NodeID, name: String, memoryBytes: UInt64) {
        self.id = id
        self.name = name
        self.memoryBytes = memoryBytes
    }

    /// The planner's view of a node's latest report; `nil` for a draining node, which takes no new work.
    package init?(_ announcement: NodeAnnouncement) {
        guard !announcement.draining else { return nil }
        let limits = announcement.limits
        self.init(
            id: announcement.nodeID,
            name: announcement.name,
            memoryBytes: limits.memoryBytes ?? announcement.hardware.memoryAvailableBytes
        )
    }
}

/// What it takes to run one catalog entry on the network as it is.
package struct CapacityVerdict: Codable, Sendable, Equatable {
    enum Status: String, Codable, Sendable {
        /// One node can hold it alone.
        case singleNode
        /// No node alone, but a pool split with llama.cpp RPC can.
        case pool
        /// Not even all nodes together; `missing` says what would.
        case needsMoreNodes
    }

    /// More nodes that would make the entry runnable: `count` nodes with `memoryBytesEach` for models.
    struct Missing: Codable, Sendable, Equatable {
        var count: Int
        var memoryBytesEach: UInt64

        package init(count: Int, memoryBytesEach: UInt64) {
            self.count = count
            self.memoryBytesEach = memoryBytesEach
        }
    }

    var model: ModelID
    /// Only pinned entries are ever loaded; an unpinned one is planned for all the same.
    var pinned: Bool
    var estimate: MemoryEstimate
    var status: Status
    /// Nodes that can serve it alone, most memory first.
    var nodes: [NodeID]
    /// The smallest pool that can serve it when no node can alone, most memory first.
    var pool: [NodeID]
    var missing: Missing?
    /// One line for people, e.g. "needs 2 more nodes with ≥ 8 GiB free".
    var summary: String
}

/// Which catalog models the network could run, as a pure function of a registry snapshot and the catalog.
///
/// A split with llama.cpp's RPC backend spreads the layers, and their KV cache, over the pool in proportion to each
/// node's free memory; every member also pays its own compute buffer and runtime. So a pool of nodes works when the
/// sum of (memory − compute − runtime) over its members covers weights + KV cache. The planner takes the nodes with
/// the most memory first, and never plans a pool larger than `maxPoolSize` or with more members than layers.
package enum CapacityPlanner {
    package static let defaultMaxPoolSize = 8
    /// The node size suggested when the network has no nodes to take as the typical one.
    package static let typicalNodeBytes: UInt64 = 8 << 30

    package static func plan(
        catalog: Catalog,
        nodes: [PoolNode],
        context: Int,
        parallel: Int = 1,
        maxPoolSize: Int = defaultMaxPoolSize
    ) -> [CapacityVerdict] {
        catalog.entries.map { plan(entry: $0, nodes: nodes, context: context, parallel: parallel, maxPoolSize: maxPoolSize) }
    }

    package static func plan(
        entry: CatalogEntry,
        nodes: [PoolNode],
        context: Int,
        parallel: Int = 1,
        maxPoolSize: Int = defaultMaxPoolSize
    ) -> CapacityVerdict {
        let estimate = ModelSizer.estimate(entry, context: context, parallel: parallel)
        let sorted = nodes.sorted { ($0.memoryBytes, $1.id) > ($1.memoryBytes, $0.id) }
        let alone = sorted.filter { $0.memoryBytes >= estimate.totalBytes }
        var verdict = CapacityVerdict(
            model: entry.id,
            pinned: entry.isPinned,
            estimate: estimate,
            status: .singleNode,
            nodes: alone.map(\.id),
            pool: [],
            missing: nil,
            summary: ""
        )
        let unpinned = entry.isPinned ? "" : " (not pinned: never loaded until an operator pins it)"
        if !alone.isEmpty {
            verdict.summary = "runs on \(alone.count) node\(alone.count == 1 ? "" : "s") alone" + unpinned
            return verdict
        }
        // A pool: every member pays its own compute buffer and runtime; the rest holds a share of the layers.
        let memberCost = estimate.computeBytes.addingSaturated(estimate.runtimeBytes)
        let shared = estimate.weightsBytes.addingSaturated(estimate.kvCacheBytes)
        let limit = max(1, min(maxPoolSize, entry.shape.layers))
        var covered: UInt64 = 0
        var pool: [PoolNode] = []
        for node in sorted.prefix(limit) where node.memoryBytes > memberCost {
            pool.append(node)
            covered = covered.addingSaturated(node.memoryBytes - memberCost)
            if covered >= shared { break }
        }
        if covered >= shared, pool.count > 1 {
            verdict.status = .pool
            verdict.pool = pool.map(\.id)
            verdict.summary = "runs split over \(pool.count) nodes with llama.cpp RPC" + unpinned
            return verdict
        }
        verdict.status = .needsMoreNodes
        verdict.pool = []
        let missing = self.missing(
            remaining: shared - min(covered, shared),
            shared: shared,
            memberCost: memberCost,
            pool: pool,
            nodes: sorted,
            limit: limit
        )
        verdict.missing = missing
        verdict.summary =
            "needs \(missing.count) more node\(missing.count == 1 ? "" : "s") with ≥ \(missing.memoryBytesEach.binaryBytes) free" + unpinned
        return verdict
    }

    /// How many more nodes, and how big, would make the entry runnable: `remaining` bytes of shared data are not
    /// covered by the best pool the network has now. The suggested size is the typical node here (the median),
    /// rounded up to whole GiB; when that many would pass the pool limit, fewer, bigger nodes are suggested.
    static func missing(
        remaining: UInt64,
        shared: UInt64,
        memberCost: UInt64,
        pool: [PoolNode],
        nodes: [PoolNode],
        limit: Int
    ) -> CapacityVerdict.Missing {
        let room = limit - pool.count
        if room > 0 {
            let median = nodes.isEmpty ? typicalNodeBytes : nodes[nodes.count / 2].memoryBytes
            let each = roundUpToGiB(max(median, memberCost.addingSaturated(1 << 30)))
            let perNode = max(each - min(memberCost, each), 1)
            let count = Int(clamping: remaining / perNode + (remaining % perNode == 0 ? 0 : 1))
            if count <= room { return .init(count: count, memoryBytesEach: each) }
            return .init(count: room, memoryBytesEach: roundUpToGiB((remaining / UInt64(room)).addingSaturated(memberCost).addingSaturated(1)))
        }
        // The pool is as large as it may be: its members must be bigger.
        let each = roundUpToGiB((shared / UInt64(limit)).addingSaturated(memberCost).addingSaturated(1))
        let big = nodes.prefix(limit).filter { $0.memoryBytes >= each }.count
        return .init(count: max(limit - big, 1), memoryBytesEach: each)
    }

    static func roundUpToGiB(_ bytes: UInt64) -> UInt64 {
        let gib: UInt64 = 1 << 30
        let whole = bytes / gib + (bytes % gib == 0 ? 0 : 1)
        return whole >= UInt64.max / gib ? .max : whole * gib
    }
}
