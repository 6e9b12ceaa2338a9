import Dispatch
import Foundation
import HearthTesting
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthStore

/// Requests' records committed together (`GroupCommit`): one transaction for all that were queued, each acknowledged
/// only once committed, a failing one refused alone (the others committed without it), and the ledger's chain intact,
/// on both databases.
struct GroupCommitTests {
    @Test(arguments: StorageBackend.allCases)
    func recordsQueuedTogetherShareOneCommitAndAFailureStaysAlone(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("group-commit")
        let gatewayKey = IdentityKey.generate()
        let nodeKey = IdentityKey.generate()
        func usage(_ id: String) -> UsageRecord {
            UsageRecord(
                requestID: id,
                route: "/v1/chat/completions",
                model: DefaultModel.id.rawValue,
                nodeID: nodeKey.nodeID.rawValue,
                promptTokens: 3,
                completionTokens: 4,
                status: "ok",
                startedAt: Date(),
                firstByteMilliseconds: 1,
                durationMilliseconds: 2
            )
        }
        func credit(_ id: String) throws -> ReceiptSettlement {
            let receipt = Receipt(
                requestID: id,
                gateway: gatewayKey.nodeID,
                node: nodeKey.nodeID,
                account: nil,
                consumer: "anonymous",
                model: DefaultModel.id,
                modelSHA256: DefaultModel.sha256,
                promptTokens: 3,
                completionTokens: 4,
                maxTokens: 8,
                startedAt: 1,
                finishedAt: 2,
                outcome: .ok
            )
            return .credit(receipt, signed: try receipt.signed(by: nodeKey).encoded())
        }

        // A transaction is held open, so every record below is queued before the next one begins.
        let gate = DispatchSemaphore(value: 0)
        let began = Mutex(false)
        let held = Task {
            try await database.commits.write { _ in
                began.withLock { $0 = true }
                gate.wait()
                return nil
            }
        }
        _ = try await eventually("the held transaction to begin") { began.withLock { $0 } ? true : nil }
        let count = 30
        let settlements = try (0..<count).map { try credit("req-\($0)") }
        let outcomes = Task {
            await withTaskGroup(of: Bool.self) { group in
                for index in 0..<count {
                    group.addTask { (try? await database.record(usage("req-\(index)"), settling: settlements[index], gateway: gatewayKey)) != nil }
                }
                // The same request credited twice: refused alone.
                group.addTask { (try? await database.record(usage("req-0-again"), settling: settlements[0], gateway: gatewayKey)) != nil }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
        }
        _ = try await eventually("every record to be queued") { database.commits.queued == count + 1 ? true : nil }
        let before = database.commits.transactions
        gate.signal()
        _ = try await held.value
        let results = await outcomes.value
        #expect(results.filter { $0 }.count == count, "every record but the second credit is stored")
        #expect(results.filter { !$0 }.count == 1)
        #expect(database.commits.transactions - before == 2, "the held write and one transaction for all \(count) records")

        // The chain is whole: sequence numbers 1…30, each entry committing to the hash of the one before it.
        let rows = try await database.ledger(chain: gatewayKey.nodeID.rawValue)
        #expect(rows.map(\.seq) == Array(1...Int64(count)))
        var previous = Data(count: 32)
        for row in rows {
            let entry = try LedgerEntry(cbor: try CBOR(decoding: try COSESign1(decoding: Array(row.entry)).payload))
            #expect(entry.previousHash == previous)
            previous = row.hash
        }
        #expect(try await database.recentUsage(limit: 100).count == count)
    }

    /// A group commit's window as a fake pause the test ends itself (`end`), which says when one has begun (`open`): it
    /// shows what waits in the window, whatever the machine's speed.
    final class FakeWindow: Sendable {
        let open = Mutex(false)
        let end: AsyncStream<Void>.Continuation
        private let ends: AsyncStream<Void>

        init() { (ends, end) = AsyncStream.makeStream(of: Void.self) }

        func pause() async {
            open.withLock { $0 = true }
            for await _ in ends { break }
        }
    }

    /// A table `t` and a group commit on it whose window is `FakeWindow`.
    static func windowed() async throws -> (SQLiteStore, GroupCommit, FakeWindow) {
        let store = try SQLiteStore.open(path: nil)
        try await store.write { session in try session.execute("CREATE TABLE t (n INTEGER)") }
        let window = FakeWindow()
        return (store, GroupCommit(store: store, window: .milliseconds(2)) { _ in await window.pause() }, window)
    }

    /// Work that comes while the transaction before it commits, or within the window after, shares the next one.
    /// The window is a fake pause the test ends itself: it shows what waits in it, whatever the machine's speed.
    @Test func workArrivingWithinTheWindowSharesTheNextTransaction() async throws {
        let (store, commits, window) = try await Self.windowed()
        let gate = DispatchSemaphore(value: 0)
        let began = Mutex(false)
        let held = Task {
            try await commits.write { _ in
                began.withLock { $0 = true }
                gate.wait()
                return nil
            }
        }
        _ = try await eventually("the held transaction to begin") { began.withLock { $0 } ? true : nil }
        let insert: GroupCommit.Work = { session in
            try session.execute("INSERT INTO t (n) VALUES (1)")
            return nil
        }
        let first = Task { try await commits.write(insert) }
        _ = try await eventually("the first to be queued") { commits.queued == 1 ? true : nil }
        gate.signal()
        _ = try await held.value
        // Without a window the first would now be in a transaction of its own.
        _ = try await eventually("the window after the held transaction") { window.open.withLock { $0 } ? true : nil }
        #expect(commits.queued == 1, "the first waits in the window")
        let second = Task { try await commits.write(insert) }
        _ = try await eventually("the second to be queued") { commits.queued == 2 ? true : nil }
        window.end.yield()
        _ = try await first.value
        _ = try await second.value
        #expect(commits.transactions == 2, "the held transaction, then one for both")
        #expect(try await store.read { session in try session.queryOne("SELECT count(*) AS c FROM t")?.int("c") } == 2)
    }

    /// Work nobody waits for (a request's in-flight note, its quota bucket) begins no transaction at once: it waits the
    /// window, and the request's own record, which comes meanwhile, shares its transaction. A record someone waits for
    /// still begins one at once.
    @Test func workNobodyWaitsForWaitsTheWindowForTheRecordThatFollows() async throws {
        let (store, commits, window) = try await Self.windowed()
        // Ends every pause still waiting, should an expectation below fail first.
        defer { window.end.finish() }
        let insert: GroupCommit.Work = { session in
            try session.execute("INSERT INTO t (n) VALUES (1)")
            return nil
        }
        let count = { try await store.read { session in try session.queryOne("SELECT count(*) AS c FROM t")?.int("c") } }
        commits.enqueue(insert, failed: { _ in })
        _ = try await eventually("the note to wait in the window") { window.open.withLock { $0 } ? true : nil }
        #expect(commits.transactions == 0 && commits.queued == 1, "nothing written before the window ends")
        let record = Task { try await commits.write(insert) }
        _ = try await eventually("the record to be queued") { commits.queued == 2 ? true : nil }
        window.end.yield()
        _ = try await record.value
        #expect(commits.transactions == 1, "the note and the record in one transaction")
        let shared = try await count()
        #expect(shared == 2)

        // Alone, a record someone waits for is written without a window (the fake one is never ended again).
        window.open.withLock { $0 = false }
        let alone = Task { try await commits.write(insert) }
        _ = try await eventually("the record alone to commit") { commits.transactions == 2 ? true : nil }
        _ = try await alone.value
        let total = try await count()
        #expect(!window.open.withLock { $0 } && total == 3)
    }
}
