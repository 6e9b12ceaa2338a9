import Dispatch
import Foundation
import HearthTesting
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthStore

/// A SQLite gateway's quota buckets, held in its memory and written behind (`QuotaBuckets`): letting a request in does
/// not wait for the database's writer, and what the database holds afterwards is what the memory says.
@Suite(.timeLimit(.minutes(2)))
struct QuotaBucketsTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let reciprocity = Reciprocity(floorTokensPerHour: 1000)

    func usage(_ id: String) -> UsageRecord {
        UsageRecord(
            requestID: id,
            route: "/v1/chat/completions",
            model: DefaultModel.id.rawValue,
            nodeID: nil,
            promptTokens: 0,
            completionTokens: 0,
            status: "ok",
            startedAt: now,
            firstByteMilliseconds: nil,
            durationMilliseconds: 1
        )
    }

    /// The level the database's row holds for `key` (read past the gateway's memory).
    func stored(_ key: String, in database: GatewayDatabase) async throws -> Double? {
        try await database.store.read { session in
            try session.queryOne("SELECT level FROM quota_buckets WHERE key = ?", key).map { try $0.double("level") }
        }
    }

    @Test func aReservationDoesNotWaitForTheDatabasesWriter() async throws {
        let (database, _) = try await StorageBackend.sqlite.open("quota-writer")
        let book = QuotaBook(reciprocity: reciprocity, database: database)
        // The bucket is read once, before the writer is busy (a first reservation reads its row).
        #expect(await book.admit(caller: .anonymous, address: "192.0.2.1", reserving: 100, now: now).remaining == 900)
        _ = try await eventually("the first reservation to reach the database") {
            try await stored("address:192.0.2.1", in: database) == 900 ? true : nil
        }
        // The usage records of requests that just finished hold the writer.
        let release = DispatchSemaphore(value: 0)
        let holding = Atomic(false)
        let writer = Task {
            try await database.store.write { _ in
                holding.store(true, ordering: .sequentiallyConsistent)
                _ = release.wait(timeout: .now() + 60)
            }
        }
        defer { release.signal() }
        _ = try await eventually("the writer to be busy") { holding.load(ordering: .sequentiallyConsistent) ? true : nil }
        let admitted = Mutex<QuotaBook.Decision?>(nil)
        Task {
            let decision = await book.admit(caller: .anonymous, address: "192.0.2.1", reserving: 100, now: now)
            admitted.withLock { $0 = decision }
        }
        // Once a trip to the writer, which waited here until the writer was free (the bound is only for that case).
        let decision = try await eventually("the request to be let in while the writer is busy") { admitted.withLock { $0 } }
        #expect(decision.allowed && decision.remaining == 800)
        #expect(try await stored("address:192.0.2.1", in: database) == 900, "written behind: not yet")
        release.signal()
        try await writer.value
        let written = try await eventually("the reservation to reach the database") { () -> Double? in
            let level = try await stored("address:192.0.2.1", in: database)
            return level == 800 ? level : nil
        }
        #expect(written == 800)
    }

    @Test func theDatabaseEndsAsTheMemorySaysAndARestartReadsItBack() async throws {
        let (database, reopen) = try await StorageBackend.sqlite.open("quota-agree")
        let book = QuotaBook(reciprocity: reciprocity, database: database)
        let key = "address:192.0.2.2"
        // Forty requests at once, each reserving 25 and using 20: reservations and settlements race in the group
        // commits, each writing the bucket as it is when its transaction runs.
        let admitted = await withTaskGroup(of: Int.self) { group in
            for index in 0..<40 {
                group.addTask {
                    let decision = await book.admit(caller: .anonymous, address: "192.0.2.2", reserving: 25, now: now)
                    guard decision.allowed else { return 0 }
                    var charge = decision.charge
                    charge.tokens = 20
                    do {
                        _ = try await database.record(
                            usage("agree-\(index)"),
                            settling: .none,
                            quota: charge,
                            gateway: IdentityKey.generate(),
                            now: now
                        )
                    } catch {
                        Issue.record("the record of an admitted request failed: \(error)")
                    }
                    return 1
                }
            }
            return await group.reduce(0, +)
        }
        #expect(admitted == 40, "1,000 tokens hold forty reservations of 25")
        let held = try #require(database.quotaBuckets?.bucket(key))
        #expect(held.level == 1000 - 40 * 20)
        // Every write has committed once the last record returned: the row is the memory's.
        #expect(try await stored(key, in: database) == held.level)
        // A restarted gateway reads the bucket back on its first reservation.
        let restarted = QuotaBook(reciprocity: reciprocity, database: try await reopen("restarted"))
        let next = await restarted.admit(caller: .anonymous, address: "192.0.2.2", reserving: 100, now: now)
        #expect(next.allowed && next.remaining == 100, "the restarted gateway spends what the bucket held, not a new hour")
    }
}
