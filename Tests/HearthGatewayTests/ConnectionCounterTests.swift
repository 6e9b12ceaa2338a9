import NIOCore
import Testing

@testable import HearthGateway

/// The per-address connection limit, and the log of its refusals, which a flood must not turn into a flood of lines.
struct ConnectionCounterTests {
    @Test func anAddressHoldsUpToItsLimitAndExemptOnesAreNotCounted() {
        let counter = ConnectionCounter(limitPerAddress: 2, exempt: ["10.0.0.9"])
        #expect(counter.admit("10.0.0.1") && counter.admit("10.0.0.1"))
        #expect(!counter.admit("10.0.0.1"), "a third connection from the same address")
        #expect(counter.admit("10.0.0.2"), "another address has its own count")
        counter.release("10.0.0.1")
        #expect(counter.admit("10.0.0.1"), "a closed connection frees its place")
        #expect((0..<5).allSatisfy { _ in counter.admit("10.0.0.9") })
        #expect(counter.count(for: "10.0.0.9") == 0)
    }

    @Test func refusalsAreLoggedOnceEveryIntervalWithHowManyThereWere() {
        let counter = ConnectionCounter(limitPerAddress: 1, exempt: [])
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(counter.refusalToLog(now: start) == 1, "the first is logged at once")
        #expect(counter.refusalToLog(now: start + .seconds(1)) == nil)
        #expect(counter.refusalToLog(now: start + .seconds(9)) == nil)
        #expect(counter.refusalToLog(now: start + ConnectionCounter.refusalLogInterval) == 3, "the two quiet ones and this one")
        #expect(counter.refusalToLog(now: start + .seconds(11)) == nil)
    }
}
