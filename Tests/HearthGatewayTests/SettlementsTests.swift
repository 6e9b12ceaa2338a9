import Dispatch
import HearthTesting
import Hummingbird
import HummingbirdTesting
import ServiceLifecycle
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthStore

/// The metering of answers the clients already have runs beside their connections (`Settlements`): a client's next
/// request does not wait for the database, nothing is lost at shutdown, and a database that cannot keep up slows the
/// clients down again.
@Suite(.timeLimit(.minutes(2)))
struct SettlementsTests {
    /// A gate a settlement waits at, opened by the test.
    final class Gate: Sendable {
        private let opened = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

        func wait() async {
            await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
                let open = opened.withLock { state in
                    if !state.open { state.waiters.append(waiter) }
                    return state.open
                }
                if open { waiter.resume() }
            }
        }

        private let through = Atomic(false)

        /// Waits at the gate, then notes that it went through.
        func pass() async {
            await wait()
            through.store(true, ordering: .sequentiallyConsistent)
        }

        /// A settlement went through the gate.
        var passed: Bool { through.load(ordering: .sequentiallyConsistent) }

        func open() {
            for waiter in opened.withLock({ state in
                state.open = true
                defer { state.waiters = [] }
                return state.waiters
            }) { waiter.resume() }
        }
    }

    @Test func aSettlementRunsBesideAndDrainingWaitsForIt() async throws {
        let settlements = Settlements()
        let gate = Gate()
        await settlements.settle { await gate.pass() }
        // `settle` returned with its work still waiting at the gate.
        #expect(settlements.running == 1 && !gate.passed)
        let drainedAfterWork = Mutex<Bool?>(nil)
        let draining = Task {
            await settlements.drained()
            drainedAfterWork.withLock { $0 = gate.passed }
        }
        gate.open()
        await draining.value
        #expect(drainedAfterWork.withLock { $0 } == true, "drained returned before the settlement was done")
        #expect(settlements.running == 0)
        await settlements.drained()  // nothing under way: at once
    }

    @Test func aCancelledDrainStopsWaiting() async throws {
        let settlements = Settlements()
        let gate = Gate()
        await settlements.settle { await gate.pass() }
        let draining = Task { await settlements.drained() }
        draining.cancel()
        await draining.value
        #expect(!gate.passed && settlements.running == 1, "the drain returned on its cancellation, the settlement still waits")
        gate.open()
        await settlements.drained()
        #expect(gate.passed)
    }

    @Test func pastItsLimitAHandlerSettlesBeforeItReturns() async throws {
        let settlements = Settlements(limit: 1)
        let gate = Gate()
        await settlements.settle { await gate.wait() }
        let second = Atomic(false)
        await settlements.settle { second.store(true, ordering: .sequentiallyConsistent) }
        let secondDone = second.load(ordering: .sequentiallyConsistent)
        #expect(secondDone, "the second settlement ran beside as well")
        #expect(settlements.running == 1)
        gate.open()
        await settlements.drained()
    }

    @Test func theServerStopsOnlyOnceItsSettlementsAreDone() async throws {
        struct Finished: Service { func run() async throws {} }
        let settlements = Settlements()
        let gate = Gate()
        await settlements.settle { await gate.pass() }
        let stoppedAfterWork = Mutex<Bool?>(nil)
        let server = Task {
            try await SettlingServer(server: Finished(), settlements: settlements).run()
            stoppedAfterWork.withLock { $0 = gate.passed }
        }
        gate.open()
        try await server.value
        #expect(stoppedAfterWork.withLock { $0 } == true, "the server stopped with a settlement under way")
    }

    /// The usage records of the answers just sent hold the database's writer: the client's next request is answered
    /// all the same, and metered once the writer is free.
    @Test func theNextRequestDoesNotWaitForTheLastOnesRecord() async throws {
        let (gateway, _) = try await makeGateway([
            nodeA: .respond(
                status: 200,
                contentType: "application/json",
                chunks: [
                    #"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"#
                        + #""usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#
                ]
            )
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            // The first request reads the caller's quota bucket, before the writer is busy.
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { #expect($0.status == .ok) }
            await gateway.settled()
            let release = DispatchSemaphore(value: 0)
            let holding = Atomic(false)
            let writer = Task {
                try await gateway.database.store.write { _ in
                    holding.store(true, ordering: .sequentiallyConsistent)
                    _ = release.wait(timeout: .now() + 60)
                }
            }
            defer { release.signal() }
            _ = try await eventually("the writer to be busy") { holding.load(ordering: .sequentiallyConsistent) ? true : nil }
            let answered = Atomic(0)
            let asking = Task {
                for _ in 0..<2 {
                    try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { #expect($0.status == .ok) }
                    answered.add(1, ordering: .sequentiallyConsistent)
                }
            }
            // Each answer once waited here for its record, so the second was not even asked (the bound is only for that).
            _ = try await eventually("two answers while the writer is busy") {
                answered.load(ordering: .sequentiallyConsistent) == 2 ? true : nil
            }
            #expect(try await gateway.database.recentUsage().count == 1, "only the first request is metered yet")
            release.signal()
            try await writer.value
            try await asking.value
            await gateway.settled()
            #expect(try await gateway.database.recentUsage().count == 3)
        }
    }
}
