package import HearthCore
import Synchronization

/// The live state of one engine, shared by its supervisor (which writes it), the node's routes and its reports; and
/// whether the node wants it loaded (the `EngineHost` decides, the supervisor follows).
package final class EngineHandle: Sendable {
    package struct Snapshot: Sendable, Equatable {
        package var state: EngineState
        /// The loopback port the engine listens on, while it runs.
        var port: Int?
        /// The requests the running engine serves at once (its `--parallel`): as many of the node's connections to
        /// it may be kept (`EngineAddress.keepsConnection`).
        var slots = 0
        package var detail: String?
        /// Engine starts so far (1 after the first start).
        var starts: Int
        var pid: Int32?

        /// The model file's size, once it exists.
        var sizeBytes: UInt64
        /// For a model of the owner's own server: what the node could check of it.
        var backend: ExternalBackend? = nil
    }

    /// Whether the engine should run, and its use, for the host's least-recently-used eviction.
    struct Demand {
        var wanted: Bool
        var inFlight = 0
        var lastUsed = ContinuousClock.now
        /// A failure no retry can fix (a file whose hash is not the pinned one); requests are refused at once.
        var permanentFailure: String?
        var waiters: [(id: Int, continuation: CheckedContinuation<Void, Never>)] = []
        var nextWaiter = 0
    }

    let spec: ModelSpec
    /// The owner's own server answers for this model, instead of an engine the node runs.
    let backend: BackendModel?
    private let current: Mutex<Snapshot>
    private let demand: Mutex<Demand>
    /// Engines evicted to make room for this one: it starts only once their processes are gone.
    private let predecessors = Mutex<[EngineHandle]>([])
    /// Told of every state change, so the node's report answers a waiting poll at once.
    package let changes: ChangeSignal

    /// - Parameters:
    ///   - wanted: whether the supervisor loads the model as soon as it runs (otherwise it waits in standby).
    ///   - changes: the node's change signal (see `NodeStatus`).
    init(spec: ModelSpec, wanted: Bool = true, changes: ChangeSignal = ChangeSignal(), backend: BackendModel? = nil) {
        self.spec = spec
        self.backend = backend
        self.changes = changes
        current = Mutex(
            Snapshot(state: wanted ? .loading : .standby, port: nil, detail: wanted ? "preparing" : nil, starts: 0, pid: nil, sizeBytes: 0)
        )
        demand = Mutex(Demand(wanted: wanted))
    }

    package var snapshot: Snapshot { current.withLock { $0 } }

    func update(_ change: (inout Snapshot) -> Void) {
        current.withLock { change(&$0) }
        changes.notify()
    }

    /// Whether `name` names this engine's model, by id or declared alias (exactly).
    func serves(_ name: String) -> Bool {
        spec.id.rawValue == name || spec.aliases.contains { $0.rawValue == name }
    }

    // MARK: Demand

    var wanted: Bool { demand.withLock { $0.wanted } }
    var inFlight: Int { demand.withLock { $0.inFlight } }
    var lastUsed: ContinuousClock.Instant { demand.withLock { $0.lastUsed } }
    var permanentFailure: String? { demand.withLock { $0.permanentFailure } }

    /// Asks the supervisor to load (`true`) or unload the engine.
    func want(_ wanted: Bool) {
        let waiters = demand.withLock { demand in
            defer { demand.waiters = [] }
            demand.wanted = wanted
            return demand.waiters
        }
        // Every waiter wakes and checks again (`waitUntil` waits anew for the other value).
        for waiter in waiters { waiter.continuation.resume() }
    }

    /// Marks a failure that retrying cannot fix; the engine is not loaded again until the node restarts.
    func failPermanently(_ detail: String) {
        demand.withLock { $0.permanentFailure = detail }
        want(false)
    }

    /// Waits until the engine is wanted (`true`) or not (`false`), or the task is cancelled. The check and the
    /// registration happen under one lock, so a `want` in between is never missed.
    func waitUntil(wanted value: Bool) async {
        while !Task.isCancelled, wanted != value { await nextDemandChange(unless: value) }
    }

    /// Waits for the next `want`, unless the engine is already wanted as `value`.
    private func nextDemandChange(unless value: Bool) async {
        let id = demand.withLock { demand in
            demand.nextWaiter += 1
            return demand.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let done = demand.withLock { demand in
                    if Task.isCancelled || demand.wanted == value { return true }
                    demand.waiters.append((id, continuation))
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            let waiter = demand.withLock { demand -> CheckedContinuation<Void, Never>? in
                guard let index = demand.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return demand.waiters.remove(at: index).continuation
            }
            waiter?.resume()
        }
    }

    /// Records the engines evicted for this one, which must stop before it starts.
    func startAfter(_ evicted: [EngineHandle]) {
        predecessors.withLock { $0 = evicted }
    }

    /// Waits until the engines evicted for this one have no process left, at most `limit` (they get SIGKILL after a
    /// few seconds anyway), so two engines never hold their memory at once.
    func waitForPredecessors(limit: Duration) async {
        let evicted = predecessors.withLock { list in
            defer { list = [] }
            return list
        }
        let deadline = ContinuousClock.now + limit
        // Each evicted engine's supervisor clears its pid when the process is gone, which rings its change signal.
        for engine in evicted {
            await engine.changes.wait(until: deadline) { engine.snapshot.pid == nil }
        }
    }

    /// A request starts using the engine: it is not evicted while any is in flight.
    func begin() {
        demand.withLock {
            $0.inFlight += 1
            $0.lastUsed = .now
        }
    }

    func end() {
        demand.withLock {
            $0.inFlight -= 1
            $0.lastUsed = .now
        }
    }
}
