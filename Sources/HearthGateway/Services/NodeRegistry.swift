import Foundation
package import HearthCore
import Synchronization

/// The nodes the gateway knows, fed by the reports polled over their links, read by routing and the model listings.
///
/// Reports and routing touch it on every request, so it is a lock around a dictionary, not an actor.
package final class NodeRegistry: Sendable {
    struct Entry {
        var announcement: NodeAnnouncement
        var lastSeen: ContinuousClock.Instant
        var inFlight: Int = 0
        var recentLatency: Double?
        var refusedReceipts: Int = 0
        var interTokenLatency: Double?
        var successRate: Double = 1
        /// When this link's first report came (wall clock, for people: the network page shows the link's age).
        var joined = Date()
    }

    private let entries = Mutex<[NodeID: Entry]>([:])
    /// Each linked node's smoothed link round trip in milliseconds (HTTP/2 PING), kept apart from the entries because
    /// the first is measured before the node's first report makes its entry.
    private let roundTrips = Mutex<[NodeID: Double]>([:])
    /// Which nodes fail too often to be routed to for now.
    private let outliers: Mutex<OutlierDetector>
    /// What spot checks say of each node, kept when its link drops (a node cannot shed it by dialling again).
    private let spotChecks = Mutex<[NodeID: SpotReputation]>([:])
    /// Rung when a node comes, goes, or reports something new: the pool reconciler waits on it.
    package let changes = ChangeSignal()
    private let ttl: Duration
    private let clock = ContinuousClock()
    /// Whether models of owners' own servers that could not be checked are routed to, and so listed
    /// (`--allow-unverified-backends`). `routes(_:)` applies it; the dispatcher, the listings and `/api/nodes` ask it.
    let routesUnverifiedBackends: Bool

    package init(ttl: Duration, outliers: OutlierPolicy = OutlierPolicy(), routesUnverifiedBackends: Bool = false) {
        self.ttl = ttl
        self.outliers = Mutex(OutlierDetector(policy: outliers))
        self.routesUnverifiedBackends = routesUnverifiedBackends
    }

    /// Whether `model` may be routed to as far as where it comes from goes: an engine of the node's, a checked
    /// owner's server, or an unchecked one where the operator allows them.
    func routes(_ model: ServedModel) -> Bool {
        model.backend?.verified != false || routesUnverifiedBackends
    }

    /// Records an announcement. Returns `true` when the node is new.
    @discardableResult
    package func upsert(_ announcement: NodeAnnouncement) -> Bool {
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
    func expire() -> [NodeID] {
        let deadline = clock.now - ttl
        let silent = entries.withLock { entries in
            let silent = entries.filter { $0.value.lastSeen < deadline }.map(\.key)
            for id in silent { entries[id] = nil }
            return silent.sorted()
        }
        if !silent.isEmpty { changes.notify() }
        return silent
    }

    /// When the oldest report passes the TTL, if any node is known: the sweeper sleeps until then.
    func nextExpiry() -> ContinuousClock.Instant? {
        entries.withLock { $0.values.map(\.lastSeen).min() }.map { $0 + ttl }
    }

    /// The routing view of every live node.
    package func routableNodes() -> [RoutableNode] {
        let now = clock.now
        let deadline = now - ttl
        let detector = outliers.withLock { $0 }
        let reputations = spotChecks.withLock { $0 }
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
                    refusedReceipts: entry.refusedReceipts,
                    interTokenLatency: entry.interTokenLatency,
                    successRate: entry.successRate,
                    spotCheckReputation: reputations[entry.announcement.nodeID]?.value(at: now) ?? 1,
                    ejected: detector.isEjected(entry.announcement.nodeID, now: now)
                )
            }
        }
    }

    /// A node's routing score and its parts, its success rate, and when its ejection ends (seconds from now), for
    /// `/api/nodes`.
    package func routing(
        of id: NodeID
    ) -> (score: RoutingScore, successRate: Double, ejectedForSeconds: Double?, ejections: Int, inFlight: Int)? {
        guard let node = routableNodes().first(where: { $0.id == id }) else { return nil }
        let now = clock.now
        let (until, ejections) = outliers.withLock { ($0.ejectedUntil(id, now: now), $0.ejections(of: id)) }
        return (RoutingScore(node), node.successRate, until.map { ($0 - now).seconds }, ejections, node.inFlight)
    }

    /// Records how a request on `id` went: `false` for one that broke or failed before its first byte. It moves the
    /// node's success rate, and may eject the node from routing for a while (`OutlierDetector`).
    package func outcome(on id: NodeID, success: Bool) {
        let population = entries.withLock { entries in
            if let rate = entries[id]?.successRate { entries[id]?.successRate = 0.9 * rate + (success ? 0.1 : 0) }
            return entries.count
        }
        let now = clock.now
        if outliers.withLock({ $0.record(id, success: success, population: population, now: now) }) != nil {
            changes.notify()
        }
    }

    /// Records a spot check of `id`'s answer.
    func spotChecked(_ id: NodeID, passed: Bool) {
        let now = clock.now
        spotChecks.withLock { $0[id, default: SpotReputation()].record(passed: passed, now: now) }
        changes.notify()
    }

    /// Seeds what spot checks said of a node that links, from its stored results (oldest first), when this gateway
    /// has none for it yet (after a restart).
    func seedSpotChecks(_ id: NodeID, passed: [Bool]) {
        let now = clock.now
        spotChecks.withLock { checks in
            guard checks[id] == nil, !passed.isEmpty else { return }
            var reputation = SpotReputation()
            for result in passed { reputation.record(passed: result, now: now) }
            checks[id] = reputation
        }
    }

    /// A node's spot-check reputation now, and how many of its answers have been checked.
    func spotCheckStanding(of id: NodeID) -> (reputation: Double, checked: Int) {
        let now = clock.now
        return spotChecks.withLock { ($0[id]?.value(at: now) ?? 1, $0[id]?.checked ?? 0) }
    }

    /// Requests in flight on every node together (for the retry budget).
    package func requestsInFlight() -> Int {
        entries.withLock { $0.values.reduce(0) { $0 + $1.inFlight } }
    }

    /// The latest announcement of every live node, sorted by id.
    package func announcements() -> [NodeAnnouncement] {
        let deadline = clock.now - ttl
        return entries.withLock { entries in
            entries.values.filter { $0.lastSeen >= deadline }.map(\.announcement).sorted { $0.nodeID < $1.nodeID }
        }
    }

    /// Marks a node as seen now: its link is up and a report poll is under way.
    func touch(_ id: NodeID) {
        let now = clock.now
        entries.withLock { $0[id]?.lastSeen = now }
    }

    /// Forgets a node at once, when its link closes.
    func remove(_ id: NodeID) {
        entries.withLock { $0[id] = nil }
        roundTrips.withLock { $0[id] = nil }
        changes.notify()
    }

    /// Notes one measured round trip of `id`'s link. The kept value is smoothed (3/4 old, 1/4 new): one late answer on
    /// a busy machine moves it by a quarter, while a link that really got longer shows within a few polls (seconds
    /// apart), before the next pool is planned.
    func noteRoundTrip(of id: NodeID, _ roundTrip: Duration) {
        let milliseconds = roundTrip.milliseconds
        roundTrips.withLock { $0[id] = $0[id].map { 0.75 * $0 + 0.25 * milliseconds } ?? milliseconds }
    }

    /// The smoothed round trip of `id`'s link in milliseconds, once measured.
    func roundTrip(of id: NodeID) -> Double? {
        roundTrips.withLock { $0[id] }
    }

    /// What the pool planner needs of every live node: its pool offer, link round trip and whether it drains.
    func poolCandidates() -> [PoolCandidate] {
        let deadline = clock.now - ttl
        let roundTrips = roundTrips.withLock { $0 }
        return entries.withLock { entries in
            entries.values.compactMap { entry in
                guard entry.lastSeen >= deadline, let offer = entry.announcement.pool else { return nil }
                return PoolCandidate(
                    id: entry.announcement.nodeID,
                    offer: offer,
                    latencyMilliseconds: roundTrips[entry.announcement.nodeID],
                    draining: entry.announcement.draining
                )
            }
        }
    }

    /// The latest report of a live node.
    func announcement(of id: NodeID) -> NodeAnnouncement? {
        let deadline = clock.now - ttl
        return entries.withLock { entries in entries[id].flatMap { $0.lastSeen >= deadline ? $0.announcement : nil } }
    }

    /// Counts a receipt from `id` that the gateway refused; routing prefers nodes without any.
    func receiptRefused(by id: NodeID) {
        entries.withLock { $0[id]?.refusedReceipts += 1 }
    }

    /// When a live node's current link sent its first report.
    func joined(_ id: NodeID) -> Date? {
        entries.withLock { $0[id]?.joined }
    }

    /// The account a live node serves for.
    func account(of id: NodeID) -> NodeID? {
        entries.withLock { $0[id]?.announcement.account }
    }

    /// Sets a node's refused-receipt count from its record, when it links.
    package func seedRefusedReceipts(_ id: NodeID, count: Int) {
        entries.withLock { $0[id]?.refusedReceipts = count }
    }

    /// Receipts refused from each live node.
    package func refusedReceipts() -> [NodeID: Int] {
        entries.withLock { $0.mapValues(\.refusedReceipts) }
    }

    /// Counts a request the gateway starts on `id`.
    func begin(on id: NodeID) {
        entries.withLock { $0[id]?.inFlight += 1 }
    }

    /// Counts a request on `id` as over; `latency` (seconds to first byte) and `pace` (seconds between tokens) feed
    /// their smoothed values.
    func end(on id: NodeID, latency: Double?, pace: Double? = nil) {
        entries.withLock { entries in
            guard var entry = entries[id] else { return }
            entry.inFlight = max(0, entry.inFlight - 1)
            if let latency {
                entry.recentLatency = entry.recentLatency.map { 0.8 * $0 + 0.2 * latency } ?? latency
            }
            if let pace {
                entry.interTokenLatency = entry.interTokenLatency.map { 0.8 * $0 + 0.2 * pace } ?? pace
            }
            entries[id] = entry
        }
    }

    /// Models that a node serves now or loads on the first request (standby), with those nodes, for the listings.
    package func readyModels() -> [(model: ServedModel, nodes: [NodeID])] {
        var byID: [ModelID: (model: ServedModel, nodes: [NodeID])] = [:]
        for node in routableNodes() where !node.draining {
            for model in node.models where model.state == .ready || model.state == .standby {
                // The listings name only what a request would be routed to.
                guard routes(model) else { continue }
                byID[model.id, default: (model, [])].nodes.append(node.id)
            }
        }
        return byID.values.sorted { $0.model.id < $1.model.id }
    }

    /// The listed model a client's name stands for (its id, a catalog name that resolves to it, or an alias), as
    /// `readyModels` lists it; `nil` when none is served now.
    func readyModel(named name: ModelID, in catalog: Catalog) -> (model: ServedModel, nodes: [NodeID])? {
        let resolved = catalog.resolve(name)?.id ?? name
        return readyModels().first { $0.model.id == resolved || $0.model.aliases.contains(name) }
    }

    /// The number of live nodes and of those with at least one ready model.
    func counts() -> (online: Int, ready: Int) {
        let nodes = routableNodes()
        let ready = nodes.filter { node in !node.draining && node.models.contains { $0.state == .ready } }.count
        return (nodes.count, ready)
    }
}

/// A node's spot-check reputation: each check moves it 30 % towards 1 (passed) or 0 (failed), and between checks it
/// recovers towards 1 with a half-life of an hour, so an old failure fades while repeated ones keep it low.
struct SpotReputation: Sendable {
    private var value = 1.0
    private var updated: ContinuousClock.Instant?
    private(set) var checked = 0

    static let halfLife: Duration = .seconds(3600)

    func value(at now: ContinuousClock.Instant) -> Double {
        guard let updated else { return value }
        let elapsed = max(0, (now - updated).seconds)
        return 1 - (1 - value) * pow(0.5, elapsed / Self.halfLife.seconds)
    }

    mutating func record(passed: Bool, now: ContinuousClock.Instant) {
        value = 0.7 * value(at: now) + (passed ? 0.3 : 0)
        updated = now
        checked += 1
    }
}
