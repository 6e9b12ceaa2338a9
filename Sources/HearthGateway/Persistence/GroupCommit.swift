import HearthStore
import Synchronization

/// Writes that commit together. Each caller queues its work and (unless it does not care) waits until the
/// transaction it ran in has committed, so nothing is acknowledged before it is durable, as with one transaction each.
///
/// Whoever is queued when the writer gets free shares one transaction: alone, a record is written at once; under load,
/// the records of every request that finished meanwhile share one commit and one trip to the database's writer,
/// which was a tenth of the gateway's CPU per request (`bench/README.md`). Each piece of work runs in its own
/// savepoint, so one that fails (a second credit for the same request) is rolled back alone and reports its error to
/// its caller.
final class GroupCommit: Sendable {
    typealias Work = @Sendable (any SQLSession) throws -> LedgerRow?
    private typealias Waiter = CheckedContinuation<Result<LedgerRow?, any Error>, Never>
    private typealias Item = (work: Work, waiter: Waiter?)

    private struct State {
        var pending: [Item] = []
        var writing = false
        var committed = 0
    }

    private let store: any SQLStore
    private let state = Mutex(State())

    init(store: any SQLStore) {
        self.store = store
    }

    /// Work queued for the next transaction (for tests).
    package var queued: Int { state.withLock { $0.pending.count } }

    /// Transactions committed so far (for tests).
    package var transactions: Int { state.withLock { $0.committed } }

    /// Runs `work` in the next transaction and returns once that has committed.
    func write(_ work: @escaping Work) async throws -> LedgerRow? {
        let result = await withCheckedContinuation { (waiter: Waiter) in enqueue(work, waiter: waiter) }
        return try result.get()
    }

    /// Queues `work` for the next transaction without waiting for it; `failed` hears of an error.
    func enqueue(_ work: @escaping Work, failed: @escaping @Sendable (any Error) -> Void) {
        enqueue(
            { session in
                do {
                    return try work(session)
                } catch {
                    failed(error)
                    throw error
                }
            },
            waiter: nil
        )
    }

    private func enqueue(_ work: @escaping Work, waiter: Waiter?) {
        let start = state.withLock { state -> Bool in
            state.pending.append((work, waiter))
            guard !state.writing else { return false }
            state.writing = true
            return true
        }
        if start { Task { await self.writeBatches() } }
    }

    /// One transaction for everything queued when it begins; then the next, while more is queued.
    private func writeBatches() async {
        while true {
            let batch = state.withLock { state in
                defer { state.pending = [] }
                return state.pending
            }
            let works = batch.map(\.work)
            let committed: Result<[Result<LedgerRow?, any Error>], any Error>
            do {
                // A transaction the database runs again (PostgreSQL, after a deadlock) starts from nothing, so each
                // run records its own outcomes.
                committed = .success(
                    try await store.write { session in
                        works.map { work in Result { try session.savepoint { try work(session) } } }
                    }
                )
            } catch {
                committed = .failure(error)
            }
            for (index, item) in batch.enumerated() {
                switch committed {
                case .success(let outcomes): item.waiter?.resume(returning: outcomes[index])
                case .failure(let error): item.waiter?.resume(returning: .failure(error))
                }
            }
            let more = state.withLock { state -> Bool in
                if case .success = committed { state.committed += 1 }
                state.writing = !state.pending.isEmpty
                return state.writing
            }
            if !more { return }
        }
    }
}
