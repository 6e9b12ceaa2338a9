import GRDB
import Synchronization

/// Writes that commit together. Each caller queues its work and (unless it does not care) waits until the
/// transaction it ran in has committed, so nothing is acknowledged before it is durable, as with one transaction each.
///
/// Whoever is queued when the writer gets free shares one transaction: alone, a record is written at once; under load,
/// the records of every request that finished meanwhile share one commit and one trip to GRDB's writer queue, which
/// was a tenth of the gateway's CPU per request (`bench/README.md`). Each piece of work runs in its own savepoint, so
/// one that fails (a second credit for the same request) is rolled back alone and reports its error to its caller.
final class GroupCommit: Sendable {
    typealias Work = @Sendable (Database) throws -> LedgerRow?
    private typealias Waiter = CheckedContinuation<Result<LedgerRow?, any Error>, Never>

    private struct State {
        var pending: [(work: Work, waiter: Waiter?)] = []
        var writing = false
    }

    private let writer: any DatabaseWriter
    private let state = Mutex(State())

    init(writer: any DatabaseWriter) {
        self.writer = writer
    }

    /// Work queued for the next transaction (for tests).
    package var queued: Int { state.withLock { $0.pending.count } }

    /// Runs `work` in the next transaction and returns once that has committed.
    func write(_ work: @escaping Work) async throws -> LedgerRow? {
        let result = await withCheckedContinuation { (waiter: Waiter) in enqueue(work, waiter: waiter) }
        return try result.get()
    }

    /// Queues `work` for the next transaction without waiting for it; `failed` hears of an error.
    func enqueue(_ work: @escaping Work, failed: @escaping @Sendable (any Error) -> Void) {
        enqueue(
            { db in
                do {
                    return try work(db)
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
        if start { writeBatch() }
    }

    /// One transaction for everything queued when it begins; then the next, while more is queued.
    private func writeBatch() {
        let taken = Mutex<[(work: Work, waiter: Waiter?)]>([])
        let results = Mutex<[Result<LedgerRow?, any Error>]>([])
        writer.asyncWrite(
            { db in
                let batch = self.state.withLock { state in
                    defer { state.pending = [] }
                    return state.pending
                }
                taken.withLock { $0 = batch }
                var outcomes: [Result<LedgerRow?, any Error>] = []
                for item in batch {
                    var row: LedgerRow?
                    do {
                        try db.inSavepoint {
                            row = try item.work(db)
                            return .commit
                        }
                        outcomes.append(.success(row))
                    } catch {
                        outcomes.append(.failure(error))
                    }
                }
                results.withLock { $0 = outcomes }
            },
            completion: { _, committed in
                var batch = taken.withLock { $0 }
                let outcomes = results.withLock { $0 }
                if case .failure = committed, batch.isEmpty {
                    // The transaction could not even begin: what is queued fails now rather than being tried for ever.
                    batch = self.state.withLock { state in
                        defer { state.pending = [] }
                        return state.pending
                    }
                }
                for (index, item) in batch.enumerated() {
                    switch committed {
                    case .success: item.waiter?.resume(returning: outcomes.indices.contains(index) ? outcomes[index] : .success(nil))
                    case .failure(let error): item.waiter?.resume(returning: .failure(error))
                    }
                }
                let more = self.state.withLock { state -> Bool in
                    state.writing = !state.pending.isEmpty
                    return state.writing
                }
                if more { self.writeBatch() }
            }
        )
    }
}
