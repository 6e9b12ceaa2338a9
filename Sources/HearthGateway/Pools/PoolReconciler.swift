import Foundation
package import HearthCore
import HearthMesh
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// How the gateway runs pools.
package struct PoolPolicy: Sendable {
    /// Create a pool when a request asks for a pinned model no single node serves (`--auto-pools`).
    package var automatic = false
    /// Tokens per slot, and slots, of a pool's head (`--pool-context`).
    package var context = 4096
    package var slots = 1
    /// An automatic pool that served nothing for this long is stopped, so its members get their memory back.
    package var idleTimeout: Duration = .seconds(900)
    /// At most this many automatic pools at once (`--max-auto-pools`): any caller may ask for any pinned model, and
    /// each pool takes memory the volunteers lend from every other use. Operators' pools do not count.
    package var maxAutomatic = 2
    /// How often pools are looked at when nothing changes.
    package var interval: Duration = .seconds(2)
    package var timing = PoolMachine.Timing()
    /// How long a node has to answer its part of a plan, or a stop; past it, an assignment counts as the node's loss
    /// and a stop is given up (the node drops the work when its link goes).
    package var answerTimeout: Duration = .seconds(15)

    init() {}
}

/// A pool as `GET /api/pools` shows it.
struct PoolView: Codable, Sendable, Equatable {
    struct Member: Codable, Sendable, Equatable {
        var node: NodeID
        var role: String
        var layers: Int
        var memoryBytes: UInt64
    }

    var id: PoolID
    var model: ModelID
    var state: PoolState
    var progress: String
    var automatic: Bool
    var epoch: Int
    var head: NodeID?
    var members: [Member]
    /// Seconds in the current state.
    var sinceSeconds: Int
    var lastIncident: PoolIncident?
    /// Bytes the gateway relayed since the pool was created: head → members (the weights at load, then each token's
    /// activations) and members → head.
    var relayedToMembers: UInt64
    var relayedFromMembers: UInt64
}

/// Bytes relayed per pool, both ways.
final class RelayCounters: Sendable {
    private let counts = Mutex<[PoolID: (toMembers: UInt64, fromMembers: UInt64)]>([:])

    func add(_ pool: PoolID, toMember: Bool, bytes: Int) {
        counts.withLock { counts in
            var entry = counts[pool] ?? (0, 0)
            if toMember { entry.toMembers += UInt64(bytes) } else { entry.fromMembers += UInt64(bytes) }
            counts[pool] = entry
        }
    }

    func of(_ pool: PoolID) -> (toMembers: UInt64, fromMembers: UInt64) { counts.withLock { $0[pool] ?? (0, 0) } }

    func forget(_ pool: PoolID) { counts.withLock { $0[pool] = nil } }
}

/// Owns every pool: feeds each one's `PoolMachine` what the registry says about its nodes, and carries out what the
/// machine returns (assignments over the links, the peer streams between head and members, stops, incident lines).
/// It looks at the pools every `interval` and at once on every registry change.
package final class PoolReconciler: Service, Sendable {
    struct Instance: Sendable {
        var id: PoolID
        var entry: CatalogEntry
        var only: [NodeID]?
        var automatic: Bool
        var machine: PoolMachine
        var lastUsed: ContinuousClock.Instant
        /// Requests routed to the pool's head and not yet over: a pool that serves one is not idle, however long it takes.
        var inFlight = 0
        var relays: [Task<Void, Never>] = []
        /// Assignments sent in the background (`assignInBackground`); a stop waits for them.
        var assignments: [Task<Void, Never>] = []

        /// Not stopped or being stopped: it serves, or will.
        var isLive: Bool { machine.state != .stopped && machine.state != .stopping }
    }

    let registry: NodeRegistry
    let links: NodeLinks
    let catalog: Catalog
    let policy: PoolPolicy
    let metrics: GatewayMetrics
    let logger: Logger
    /// Where pool definitions are kept across restarts; `nil` keeps them in memory only.
    let database: GatewayDatabase?
    let pools = Mutex<[PoolID: Instance]>([:])
    let relayed = RelayCounters()
    /// Models an automatic pool is being created for, so two requests at once create one pool, not two.
    private let creating = Mutex<Set<ModelID>>([])
    private let wake = ChangeSignal()

    init(
        registry: NodeRegistry,
        links: NodeLinks,
        catalog: Catalog,
        policy: PoolPolicy,
        metrics: GatewayMetrics,
        database: GatewayDatabase? = nil,
        logger: Logger
    ) {
        self.database = database
        self.registry = registry
        self.links = links
        self.catalog = catalog
        self.policy = policy
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Requests from routes and the dispatcher

    /// Creates a pool for `model` (over `nodes` only, when given).
    /// - Throws: `APIFailure` for a model the catalog does not pin.
    func create(model: ModelID, nodes: [NodeID]? = nil, automatic: Bool = false, id: PoolID = .random()) async throws(APIFailure) -> PoolID {
        guard let entry = catalog.resolve(model), entry.sha256 != nil else {
            throw APIFailure(.notFound, "The catalog pins no model '\(model)'.", param: "model", code: "model_not_found")
        }
        let record = PoolRecord(
            id: id.rawValue,
            model: entry.id.rawValue,
            nodes: nodes.map { $0.map(\.rawValue).joined(separator: ",") },
            automatic: automatic,
            createdAt: Date()
        )
        do {
            try await database?.savePool(record)
        } catch {
            throw APIFailure(.server, "The pool could not be stored: \(error)")
        }
        adopt(id: id, entry: entry, nodes: nodes, automatic: automatic)
        logger.info("pool created", metadata: ["pool.id": "\(id)", "node.model": "\(entry.id)", "pool.automatic": "\(automatic)"])
        return id
    }

    /// Takes a pool on, already stored, to be planned by the loop.
    private func adopt(id: PoolID, entry: CatalogEntry, nodes: [NodeID]?, automatic: Bool) {
        let now = ContinuousClock.now
        pools.withLock {
            $0[id] = Instance(
                id: id,
                entry: entry,
                only: nodes,
                automatic: automatic,
                machine: PoolMachine(now: now, timing: policy.timing),
                lastUsed: now
            )
        }
        wake.notify()
    }

    /// Stops a pool and forgets its definition; returns whether it existed.
    func stop(_ id: PoolID) async -> Bool {
        let found = pools.withLock { $0[id] != nil }
        guard found else { return false }
        try? await database?.deletePool(id: id.rawValue)
        enqueue(id, .stop)
        return true
    }

    /// Takes on the pools stored by an earlier run, to be planned again. Called before the API listens, so that no
    /// request finds the model without its pool and is refused as unknown.
    func restore() async {
        guard let records = try? await database?.pools() else { return }
        for record in records {
            let nodes = record.nodes.map { $0.split(separator: ",").compactMap { NodeID(String($0)) } }
            guard let id = PoolID(record.id), let model = ModelID(record.model),
                let entry = catalog.resolve(model), entry.sha256 != nil
            else {
                logger.warning(
                    "a stored pool cannot be restored: its model is not pinned by the catalog",
                    metadata: ["pool.id": "\(record.id)", "node.model": "\(record.model)"]
                )
                try? await database?.deletePool(id: record.id)
                continue
            }
            adopt(id: id, entry: entry, nodes: nodes, automatic: record.automatic)
            logger.info("pool restored", metadata: ["pool.id": "\(id)", "node.model": "\(entry.id)"])
        }
    }

    /// What a pool can do for a request that found no node ready.
    enum Demand: Sendable, Equatable {
        /// A pool for the model is warming (or was just created): how far it is.
        case warming(String)
        /// A pool could serve it, but the gateway already runs `limit` automatic pools.
        case full(limit: Int)
    }

    /// A request for `model` found no node ready: how far the pool serving it is, creating one when pools are
    /// automatic, the current nodes could hold it and fewer than `maxAutomatic` automatic pools run; `nil` when no
    /// pool can help.
    func demand(model: ModelID) async -> Demand? {
        guard let entry = catalog.resolve(model), entry.sha256 != nil else { return nil }
        let now = ContinuousClock.now
        let existing = pools.withLock { pools -> String? in
            guard
                let key = pools.first(where: { $0.value.entry.id == entry.id && $0.value.isLive })?.key
            else { return nil }
            pools[key]?.lastUsed = now
            return pools[key]?.machine.progress
        }
        if let existing { return .warming(existing) }
        guard policy.automatic else { return nil }
        // Only when a pool of the nodes now could hold it: otherwise the client's 503 says so without a pool.
        guard case .success = PoolPlanner.plan(entry: entry, context: policy.context, slots: policy.slots, candidates: registry.poolCandidates())
        else {
            return nil
        }
        guard let others = creating.withLock({ $0.insert(entry.id).inserted ? $0.count - 1 : nil }) else { return .warming("planning") }
        defer { creating.withLock { _ = $0.remove(entry.id) } }
        // Checked again under the claim: a request just before this one may have created it already; and the cap
        // counts the pools other requests are creating right now.
        let (exists, automatic) = pools.withLock { pools in
            (
                pools.values.contains { $0.entry.id == entry.id && $0.isLive },
                pools.values.filter { $0.automatic && $0.isLive }.count
            )
        }
        if exists { return .warming("planning") }
        guard automatic + others < policy.maxAutomatic else { return .full(limit: policy.maxAutomatic) }
        _ = try? await create(model: entry.id, automatic: true)
        return .warming("planning")
    }

    /// The plan `pool` runs now, with its epoch: what a pooled receipt must name.
    func currentPlan(of pool: PoolID) -> (epoch: Int, plan: PoolPlan)? {
        pools.withLock { pools in pools[pool].flatMap { instance in instance.machine.plan.map { (instance.machine.epoch, $0) } } }
    }

    /// Whether `pool` is ready with its head on `node`, by the gateway's own plan.
    func serves(_ pool: PoolID, head node: NodeID) -> Bool {
        pools.withLock { pools in pools[pool].map { $0.machine.state == .ready && $0.machine.plan?.head.node == node } ?? false }
    }

    /// A request was routed to `pool`'s head; `finished(_:)` says when it is over.
    func used(_ pool: PoolID) {
        let now = ContinuousClock.now
        pools.withLock { pools in
            pools[pool]?.lastUsed = now
            pools[pool]?.inFlight += 1
        }
    }

    /// A request `used(_:)` counted is over: the pool's idle time starts now.
    func finished(_ pool: PoolID) {
        let now = ContinuousClock.now
        pools.withLock { pools in
            guard var instance = pools[pool] else { return }
            instance.lastUsed = now
            instance.inFlight = max(0, instance.inFlight - 1)
            pools[pool] = instance
        }
    }

    func views() -> [PoolView] {
        let now = ContinuousClock.now
        return pools.withLock { Array($0.values) }.map { instance in
            let machine = instance.machine
            let plan = machine.plan
            let bytes = relayed.of(instance.id)
            var members: [PoolView.Member] = []
            if let plan {
                members.append(.init(node: plan.head.node, role: "head", layers: plan.head.layers, memoryBytes: plan.head.memoryBytes))
                members += plan.members.map { .init(node: $0.node, role: "member", layers: $0.layers, memoryBytes: $0.memoryBytes) }
            }
            return PoolView(
                id: instance.id,
                model: instance.entry.id,
                state: machine.state,
                progress: machine.progress,
                automatic: instance.automatic,
                epoch: machine.epoch,
                head: plan?.head.node,
                members: members,
                sinceSeconds: Int((now - machine.since).components.seconds),
                lastIncident: machine.lastIncident,
                relayedToMembers: bytes.toMembers,
                relayedFromMembers: bytes.fromMembers
            )
        }.sorted { $0.id < $1.id }
    }

    // MARK: The loop

    private let queued = Mutex<[(PoolID, PoolMachine.Event)]>([])
    /// Stops under way (`PoolMachine.Action.stopWork`) by pool; the last of a pool's to end queues `workGone`. Awaited
    /// at shutdown, while the links are still up.
    let stops = Mutex<[Int: (pool: PoolID, task: Task<Void, Never>)]>([:])
    let nextStop = Atomic<Int>(0)

    func enqueue(_ id: PoolID, _ event: PoolMachine.Event) {
        queued.withLock { $0.append((id, event)) }
        wake.notify()
    }

    package func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let seenRegistry = self.registry.changes.generation
                let seenWake = self.wake.generation
                await self.step()
                // Ticks drive the pools' timers; with no pool there is nothing to time, so only a change wakes it.
                let idle = self.pools.withLock { $0.isEmpty }
                let deadline = ContinuousClock.now + (idle ? .seconds(3600) : self.policy.interval)
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.registry.changes.wait(until: deadline) { self.registry.changes.generation != seenRegistry } }
                    group.addTask { await self.wake.wait(until: deadline) { self.wake.generation != seenWake } }
                    await group.next()
                    group.cancelAll()
                }
            }
        }
        // Shutdown: members get their memory back; this is no incident.
        for id in pools.withLock({ Array($0.keys) }) { await feed(id, .stop) }
        await stopsDone()
    }

    /// Waits for the stops under way, each bounded per node.
    func stopsDone() async {
        for stop in stops.withLock({ Array($0.values) }) { await stop.task.value }
    }

    /// One look at every pool: queued events, what the registry says, the idle check, then a tick.
    func step() async {
        for (id, event) in queued.withLock({ queued in
            defer { queued = [] }
            return queued
        }) { await feed(id, event) }
        let now = ContinuousClock.now
        for instance in pools.withLock({ Array($0.values) }) {
            for event in observe(instance) { await feed(instance.id, event) }
            let state = instance.machine.state
            if instance.automatic, state == .ready || state == .failed, instance.inFlight == 0, now - instance.lastUsed > policy.idleTimeout {
                logger.info("pool idle; stopping it", metadata: ["pool.id": "\(instance.id)"])
                try? await database?.deletePool(id: instance.id.rawValue)
                await feed(instance.id, .stop)
            }
            await feed(instance.id, .tick)
        }
        // Stopped pools go once their work is gone.
        let gone = pools.withLock { pools -> [PoolID] in
            let gone = pools.filter { $0.value.machine.state == .stopped }.map(\.key)
            for id in gone { pools[id] = nil }
            return gone
        }
        for id in gone { relayed.forget(id) }
        metrics.pools(Dictionary(grouping: pools.withLock { $0.values.map(\.machine.state) }, by: { $0 }).mapValues(\.count))
    }

    /// What the registry says about the nodes of the current plan, as events: losses of members first, because a
    /// head that dies of a lost member is that member's incident, not a crash of its own.
    func observe(_ instance: Instance) -> [PoolMachine.Event] {
        guard let plan = instance.machine.plan else { return [] }
        let epoch = instance.machine.epoch
        var events: [PoolMachine.Event] = []
        for node in plan.members.map(\.node) + [plan.head.node] {
            guard let announcement = registry.announcement(of: node) else {
                events.append(.memberLost(node, epoch: epoch, detail: "node \(node.short) is gone (its link closed or went silent)"))
                continue
            }
            if announcement.draining {
                events.append(.memberLost(node, epoch: epoch, detail: "node \(node.short) is draining"))
                continue
            }
            guard let work = announcement.pool?.work.first(where: { $0.pool == instance.id && $0.epoch == epoch }) else { continue }
            switch (work.role, work.state) {
            case (.member, .ready): events.append(.memberReady(node, epoch: epoch))
            case (.member, .failed): events.append(.memberLost(node, epoch: epoch, detail: work.detail ?? "its rpc-server failed"))
            case (.head, .ready):
                events.append(.headReady(epoch: epoch))
                if let stalled = work.stalledSeconds, stalled > 0 { events.append(.headStalled(epoch: epoch, seconds: stalled)) }
            case (.head, .failed): events.append(.headFailed(epoch: epoch, detail: work.detail ?? "the head's engine failed"))
            case (_, .starting): break
            }
        }
        return events.sorted { Self.urgency($0) < Self.urgency($1) }
    }

    private static func urgency(_ event: PoolMachine.Event) -> Int {
        switch event {
        case .memberLost: 0
        case .headFailed, .headStalled: 1
        default: 2
        }
    }

    /// Hands `event` to the pool's machine and carries out its actions.
    func feed(_ id: PoolID, _ event: PoolMachine.Event) async {
        let now = ContinuousClock.now
        guard
            let (actions, instance) = pools.withLock({ pools -> ([PoolMachine.Action], Instance)? in
                guard var instance = pools[id] else { return nil }
                let actions = instance.machine.handle(event, now: now)
                pools[id] = instance
                return (actions, instance)
            })
        else { return }
        for action in actions { await apply(action, to: instance) }
    }
}
