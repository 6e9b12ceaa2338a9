import HearthMesh
import ServiceLifecycle
import Synchronization

/// The metering of requests whose clients already have their whole response (the receipt's check, the usage row and
/// the ledger entry), run beside the connection, which is free for the client's next request at once.
///
/// A connection's next request used to wait until the last one's record had committed: a client asking one thing
/// after another on a kept connection paid for the database's write every time (0.1–0.2 ms of the added latency p50,
/// `bench/README.md`). Each settlement now runs in a task of its own. Past `limit` under way at once, a handler settles
/// before it returns again, so that a database that cannot keep up slows its clients down instead of queueing their
/// records without bound. The gateway's shutdown waits for every settlement (`drained`) before the process ends, within
/// its drain time.
final class Settlements: Sendable {
    private struct State {
        var running = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        /// Waits cancelled before they were stored in `waiters`.
        var cancelled: Set<Int> = []
    }

    private let state = Mutex(State())
    /// The most settlements run beside their connections at once.
    let limit: Int

    init(limit: Int = 4096) {
        self.limit = limit
    }

    /// Settlements under way beside their connections (for tests).
    package var running: Int { state.withLock { $0.running } }

    /// Runs `work` in a task of its own while fewer than `limit` do, else before returning.
    func settle(_ work: @escaping @Sendable () async -> Void) async {
        let beside = state.withLock { state in
            guard state.running < limit else { return false }
            state.running += 1
            return true
        }
        guard beside else { return await work() }
        runBeside(work)
    }

    /// Runs `work` in a task of its own whatever the limit: for a settlement nobody can wait for (a response whose
    /// body Hummingbird dropped unrun, see `ResponseBody.owing`).
    func begin(_ work: @escaping @Sendable () async -> Void) {
        state.withLock { $0.running += 1 }
        runBeside(work)
    }

    /// Runs `work`, already counted in `running`, in a task of its own. On the caller's event loop when it has one (the
    /// connection's, where a handler runs): in the runtime's pool, each settlement woke a pool thread, and each of its
    /// hand-offs back to the loop another switch.
    private func runBeside(_ work: @escaping @Sendable () async -> Void) {
        Task(executorPreference: EventLoopExecutor.current) {
            await work()
            self.finished()
        }
    }

    /// Returns once no settlement is under way, or when the caller is cancelled (a shutdown past its drain time).
    func drained() async {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    guard state.running > 0, state.cancelled.remove(id) == nil else { return true }
                    state.waiters[id] = waiter
                    return false
                }
                if now { waiter.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    state.cancelled.insert(id)
                    return nil as CheckedContinuation<Void, Never>?
                }
                return waiter
            }
            waiter?.resume()
        }
        // A cancellation that came after the wait was over leaves nothing behind.
        state.withLock { _ = $0.cancelled.remove(id) }
    }

    private func finished() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.running -= 1
            guard state.running == 0 else { return [] }
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// The API server as a service that, once its connections are done, waits for their settlements: the process must not
/// end with a usage row or a ledger entry still to be written.
struct SettlingServer: Service {
    let server: any Service
    let settlements: Settlements

    func run() async throws {
        do {
            try await server.run()
        } catch {
            await settlements.drained()
            throw error
        }
        await settlements.drained()
    }
}
