public import HearthCore
import Synchronization

/// The nodes the gateway knows, fed by the reports polled over their links, read by routing and the model listings.
///
/// Reports and routing touch it on every request, so it is a lock around a dictionary, not an actor.
public final class NodeRegistry: Sendable {
    struct Entry {
        var announcement: NodeAnnouncement
        var lastSeen: ContinuousClock.Instant
        var inFlight: Int = 0
        var recentLatency: Double?
        var refusedReceipts: Int = 0
    }

    private let entries = Mutex<[NodeID: Entry]>([:])
    /// Rung when a node comes, goes, or reports something new: the pool reconciler waits on it.
    public let changes = ChangeSignal()
    private let ttl: Duration
    private let clock = ContinuousClock()

    public init(ttl: Duration) {
        self.ttl = ttl
    }

    /// Records an announcement. Returns `true` when the node is new.
    @discardableResult
    public func upsert(_ announcement: NodeAnnouncement) -> Bool {
        let now = clock.now
        let (new, changed) = entries.withLock { entries in
            if var entry = entries[announcement.nodeID] {
                let changed = entry.announcement != announcement
                entry.announcement = announcement
                entry.lastSeen = now
                entries[announcement.nodeID] = entry
                return (false, changed)
            }
            entries[announcement.nodeID] = Entry(announcement: announcement, lastSeen: now)
            return (true, true)
        }
        if changed { changes.notify() }
        return new
    }

    /// Drops nodes silent for longer than the TTL, and returns their ids.
    public func expire() -> [NodeID] {
        let deadline = clock.now - ttl
        let silent = entries.withLock { entries in
            let silent = entries.filter { $0.value.lastSeen < deadline }.map(\.key)
            for id in silent { entries[id] = nil }
            return silent.sorted()
        }
        if !silent.isEmpty { changes.notify() }
        return silent
    }

    /// The routing view of every live node.
    public func routableNodes() -> [RoutableNode] {
        let deadline = clock.now - ttl
        return entries.withLock { entries in
            entries.values.compactMap { entry in
                guard entry.lastSeen >= deadline else { return nil }
                return RoutableNode(
                    id: entry.announcement.nodeID,
                    models: entry.announcement.models,
                    parallelSlots: entry.announcement.limits.parallelSlots,
                    inFlight: entry.inFlight,
                    recentLatency: entry.recentLatency,
                    draining: entry.announcement.draining,
                    refusedReceipts: entry.refusedReceipts
                )
            }
        }
    }

    /// The latest announcement of every live node, sorted by id.
    public func announcements() -> [NodeAnnouncement] {
        let deadline = clock.now - ttl
        return entries.withLock { entries in
            entries.values.filter { $0.lastSeen >= deadline }.map(\.announcement).sorted { $0.nodeID < $1.nodeID }
        }
    }

    /// Marks a node as seen now: its link is up and a report poll is under way.
    public func touch(_ id: NodeID) {
        let now = clock.now
        entries.withLock { $0[id]?.lastSeen = now }
    }

    /// Forgets a node at once, when its link closes.
    public func remove(_ id: NodeID) {
        entries.withLock { $0[id] = nil }
        changes.notify()
    }

    /// What the pool planner needs of every live node: its pool offer, latency and whether it drains.
    public func poolCandidates() -> [PoolCandidate] {
        let deadline = clock.now - ttl
        return entries.withLock { entries in
            entries.values.compactMap { entry in
                guard entry.lastSeen >= deadline, let offer = entry.announcement.pool else { return nil }
                return PoolCandidate(
                    id: entry.announcement.nodeID,
                    offer: offer,
                    latencyMilliseconds: entry.recentLatency,
                    draining: entry.announcement.draining
                )
            }
        }
    }

    /// The latest report of a live node.
    public func announcement(of id: NodeID) -> NodeAnnouncement? {
        let deadline = clock.now - ttl
        return entries.withLock { entries in entries[id].flatMap { $0.lastSeen >= deadline ? $0.announcement : nil } }
    }

    /// Counts a receipt from `id` that the gateway refused; routing prefers nodes without any.
    public func receiptRefused(by id: NodeID) {
        entries.withLock { $0[id]?.refusedReceipts += 1 }
    }

    /// The account a live node serves for.
    public func account(of id: NodeID) -> NodeID? {
        entries.withLock { $0[id]?.announcement.account }
    }

    /// Sets a node's refused-receipt count from its record, when it links.
    public func seedRefusedReceipts(_ id: NodeID, count: Int) {
        entries.withLock { $0[id]?.refusedReceipts = count }
    }

    /// Receipts refused from each live node.
    public func refusedReceipts() -> [NodeID: Int] {
        entries.withLock { $0.mapValues(\.refusedReceipts) }
    }

    /// Counts a request the gateway starts on `id`.
    public func begin(on id: NodeID) {
        entries.withLock { $0[id]?.inFlight += 1 }
    }

    /// Counts a request on `id` as over; `latency` (seconds to first byte) feeds the smoothed latency.
    public func end(on id: NodeID, latency: Double?) {
        entries.withLock { entries in
            guard var entry = entries[id] else { return }
            entry.inFlight = max(0, entry.inFlight - 1)
            if let latency {
                entry.recentLatency = entry.recentLatency.map { 0.8 * $0 + 0.2 * latency } ?? latency
            }
            entries[id] = entry
        }
    }

    /// Models that a node serves now or loads on the first request (standby), with those nodes, for the listings.
    public func readyModels() -> [(model: ServedModel, nodes: [NodeID])] {
        var byID: [ModelID: (model: ServedModel, nodes: [NodeID])] = [:]
        for node in routableNodes() where !node.draining {
            for model in node.models where model.state == .ready || model.state == .standby {
                byID[model.id, default: (model, [])].nodes.append(node.id)
            }
        }
        return byID.values.sorted { $0.model.id < $1.model.id }
    }

    /// The number of live nodes and of those with at least one ready model.
    public func counts() -> (online: Int, ready: Int) {
        let nodes = routableNodes()
        let ready = nodes.filter { node in !node.draining && node.models.contains { $0.state == .ready } }.count
        return (nodes.count, ready)
    }
}
