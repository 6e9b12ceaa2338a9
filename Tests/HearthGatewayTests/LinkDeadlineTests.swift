import Synchronization
import Testing

@testable import HearthGateway
@testable import HearthMesh

/// The report poll's deadline: a late answer ends the link only when the node has also gone quiet (a node whose
/// machine is saturated answers late but keeps sending; closing its link cut every stream on it).
struct LinkDeadlineTests {
    @Test func aQuietLinkTimesOut() async throws {
        await #expect(throws: LinkError.timedOut) {
            let neverHeard: @Sendable () -> Bool = { false }
            _ = try await withDeadline(.milliseconds(50), extendedWhile: neverHeard) { () async throws -> Int in
                // An answer that never comes.
                try await Task.sleep(for: .seconds(3600))
                return 1
            }
        }
    }

    @Test func aLateAnswerOnALinkStillSendingArrives() async throws {
        // The answer comes only after the deadline has been extended twice: without the extension the link would
        // have been judged dead at the first deadline.
        let asked = Atomic<Int>(0)
        let (extended, extensions) = AsyncStream.makeStream(of: Void.self)
        let stillSending: @Sendable () -> Bool = {
            if asked.add(1, ordering: .relaxed).newValue == 2 { extensions.yield() }
            return true
        }
        let value = try await withDeadline(.milliseconds(50), extendedWhile: stillSending) { () async throws -> Int in
            _ = await extended.first { _ in true }
            return 7
        }
        #expect(value == 7)
        #expect(asked.load(ordering: .relaxed) >= 2)
    }
}
