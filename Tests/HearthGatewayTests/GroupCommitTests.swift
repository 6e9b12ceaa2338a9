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

    /// Work that comes while the transaction before it commits, or within the window after, shares the next one.
    /// The window is a fake pause the test ends itself: it shows what waits in it, whatever the machine's speed.
    @Test func workArrivingWithinTheWindowSharesTheNextTransaction() async throws {
        let store = try SQLiteStore.open(path: nil)
        try await store.write { session in try session.execute("CREATE TABLE t (n INTEGER)") }
        let windowOpen = Mutex(false)
        let (windowEnds, endWindow) = AsyncStream.makeStream(of: Void.self)
        let commits = GroupCommit(store: store, window: .milliseconds(2)) { _ in
            windowOpen.withLock { $0 = true }
            for await _ in windowEnds { break }
        }
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
        _ = try await eventually("the window after the held transaction") { windowOpen.withLock { $0 } ? true : nil }
        #expect(commits.queued == 1, "the first waits in the window")
        let second = Task { try await commits.write(insert) }
        _ = try await eventually("the second to be queued") { commits.queued == 2 ? true : nil }
        endWindow.yield()
        _ = try await first.value
        _ = try await second.value
        #expect(commits.transactions == 2, "the held transaction, then one for both")
        #expect(try await store.read { session in try session.queryOne("SELECT count(*) AS c FROM t")?.int("c") } == 2)
    }
}
