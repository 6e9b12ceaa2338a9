import HearthMesh
import HearthStore
import Synchronization

/// Writes that commit together. Each caller queues its work and (unless it does not care) waits until the
/// transaction it ran in has committed, so nothing is acknowledged before it is durable, as with one transaction each.
///
/// Whoever is queued when the writer gets free shares one transaction: alone, a record is written at once; under load,
/// the records of every request that finished meanwhile share one commit and one trip to the database's writer,
/// which was a tenth of the gateway's CPU per request (`bench/README.md`). A piece of work that fails (a second credit
/// for the same request) fails alone: the transaction is rolled back, the failing work gets its error, and the rest run
/// again in the next transaction. That costs a transaction per failure, which is rare, instead of a savepoint around
/// every piece of work (two more round trips each to PostgreSQL).
///
/// Under load, a transaction begins `window` after the last one committed (PostgreSQL's `commit_delay`, in effect):
/// more records share it, and a request's share of the database's work shrinks (gateway CPU per whole answer at the
/// ceiling 368–421 → 332–344 µs with 2 ms, `bench/README.md`). Alone, a record someone waits for is written at once;
/// work nobody waits for (a request's in-flight note, its quota bucket) waits the window before its transaction
/// begins, so that a quick request's note, bucket and usage row share one transaction, written after its answer,
/// instead of two or three, the first of them while the request was on its way to the node (on two cores the
/// writer's thread took a core from the request's path: gateway CPU per spaced sequential answer 1.34 → 1.03 ms,
/// `bench/README.md`, twenty-fourth pass). Nobody the client waits on is held up: the usage records are written beside
/// the connection (`Settlements`), the in-flight notes and quota buckets behind it.
final class GroupCommit: Sendable {
    typealias Work = @Sendable (any SQLSession) throws -> LedgerRow?
    private typealias Waiter = CheckedContinuation<Result<LedgerRow?, any Error>, Never>

    private struct Item {
        var work: Work
        var waiter: Waiter?
        var failed: (@Sendable (any Error) -> Void)?

        func finish(_ outcome: Result<LedgerRow?, any Error>) {
            if case .failure(let error) = outcome { failed?(error) }
            waiter?.resume(returning: outcome)
        }
    }

    private struct State {
        var pending: [Item] = []
        var writing = false
        var committed = 0
    }

    private let store: any SQLStore
    /// The pause between one transaction and the next while work keeps coming.
    let window: Duration
    /// Waits out the window (a test passes a pause it ends itself).
    private let pause: @Sendable (Duration) async -> Void
    private let state = Mutex(State())

    init(
        store: any SQLStore,
        window: Duration = .milliseconds(2),
        pause: @escaping @Sendable (Duration) async -> Void = { try? await Task.sleep(for: $0) }
    ) {
        self.pause = pause
        self.store = store
        self.window = window
    }

    /// Work queued for the next transaction (for tests).
    package var queued: Int { state.withLock { $0.pending.count } }

    /// Transactions committed so far (for tests).
    package var transactions: Int { state.withLock { $0.committed } }

    /// Runs `work` in the next transaction and returns once that has committed.
    func write(_ work: @escaping Work) async throws -> LedgerRow? {
        let result = await withCheckedContinuation { (waiter: Waiter) in enqueue(Item(work: work, waiter: waiter)) }
        return try result.get()
    }

    /// Queues `work` for the next transaction without waiting for it; `failed` hears of an error.
    func enqueue(_ work: @escaping Work, failed: @escaping @Sendable (any Error) -> Void) {
        enqueue(Item(work: work, failed: failed))
    }

    private func enqueue(_ item: Item) {
        let start = state.withLock { state -> Bool in
            state.pending.append(item)
            guard !state.writing else { return false }
            state.writing = true
            return true
        }
        guard start else { return }
        // The writer's task runs on the event loop of the caller that started it, when there is one: started in the
        // runtime's pool, each run woke a pool thread, and each batch's completion another.
        let executor = EventLoopExecutor.current
        // Work nobody waits for waits for company (see above).
        let behind = item.waiter == nil
        Task(executorPreference: executor) { await self.writeBatches(waitingFirst: behind) }
    }

    /// Which piece of work of a batch threw; set by the transaction, read once it is over.
    private final class Failure: Sendable {
        let index = Mutex<Int?>(nil)
    }

    /// One transaction for everything queued when it begins; then the next, while more is queued. The first waits the
    /// window too when `waitingFirst`.
    private func writeBatches(waitingFirst: Bool) async {
        var first = !waitingFirst
        while true {
            // The first transaction of a run begins at once (unless nobody waits for what started it); each one after
            // it waits for company.
            if !first { await pause(window) }
            first = false
            var batch = state.withLock { state in
                defer { state.pending = [] }
                return state.pending
            }
            while !batch.isEmpty {
                let works = batch.map(\.work)
                let failure = Failure()
                do {
                    let rows = try await store.write { session in
                        // A transaction the database runs again (PostgreSQL, after a deadlock) starts from nothing.
                        failure.index.withLock { $0 = nil }
                        return try works.enumerated().map { index, work in
                            do {
                                return try work(session)
                            } catch {
                                failure.index.withLock { $0 = index }
                                throw error
                            }
                        }
                    }
                    state.withLock { $0.committed += 1 }
                    for (item, row) in zip(batch, rows) { item.finish(.success(row)) }
                    batch = []
                } catch {
                    guard let index = failure.index.withLock({ $0 }) else {
                        // The transaction itself failed (the database went away): every piece of work with it.
                        for item in batch { item.finish(.failure(error)) }
                        batch = []
                        continue
                    }
                    // Nothing was written; the work before the failing one is run again with the rest.
                    batch.remove(at: index).finish(.failure(error))
                }
            }
            let more = state.withLock { state -> Bool in
                state.writing = !state.pending.isEmpty
                return state.writing
            }
            if !more { return }
        }
    }
}
