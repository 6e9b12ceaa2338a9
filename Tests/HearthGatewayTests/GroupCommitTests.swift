import Dispatch
import Foundation
import HearthCore
import HearthStore
import HearthTesting
import Synchronization
import Testing

@testable import HearthGateway

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

    /// Work that comes while the transaction before it commits, or within `window` after, shares the next one; the
    /// next transaction begins no sooner than `window` after the last one ended.
    @Test func workArrivingWithinTheWindowSharesTheNextTransaction() async throws {
        let store = try SQLiteStore.open(path: nil)
        try await store.write { session in try session.execute("CREATE TABLE t (n INTEGER)") }
        let window = Duration.milliseconds(300)
        let commits = GroupCommit(store: store, window: window)
        let gate = DispatchSemaphore(value: 0)
        let began = Mutex(false)
        let heldEnded = Mutex<ContinuousClock.Instant?>(nil)
        let held = Task {
            try await commits.write { _ in
                began.withLock { $0 = true }
                gate.wait()
                heldEnded.withLock { $0 = .now }
                return nil
            }
        }
        _ = try await eventually("the held transaction to begin") { began.withLock { $0 } ? true : nil }
        let firstRan = Mutex<ContinuousClock.Instant?>(nil)
        let first = Task {
            try await commits.write { session in
                firstRan.withLock { $0 = $0 ?? .now }
                try session.execute("INSERT INTO t (n) VALUES (1)")
                return nil
            }
        }
        _ = try await eventually("the first to be queued") { commits.queued == 1 ? true : nil }
        gate.signal()
        _ = try await held.value
        // Within the window (the first has not begun: it cannot, for 300 ms after the held one ended).
        let second = Task {
            try await commits.write { session in
                try session.execute("INSERT INTO t (n) VALUES (2)")
                return nil
            }
        }
        _ = try await first.value
        _ = try await second.value
        let waited = try #require(firstRan.withLock { $0 }) - (try #require(heldEnded.withLock { $0 }))
        #expect(waited >= window, "the next transaction began \(waited) after the last one, within its window")
        #expect(commits.transactions == 2, "the held transaction, then one for both")
        #expect(try await store.read { session in try session.queryOne("SELECT count(*) AS c FROM t")?.int("c") } == 2)
    }
}
