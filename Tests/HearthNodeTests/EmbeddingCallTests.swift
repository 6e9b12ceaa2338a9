import Synchronization
import Testing

@testable import HearthCore
@testable import HearthNode

struct EmbeddingCallTests {
    @Test func splitsOpenAIsInputIntoSingleInputs() {
        #expect(EmbeddingCall.inputs(of: "a") == ["a"])
        #expect(EmbeddingCall.inputs(of: ["a", "b"]) == ["a", "b"])
        // Token ids alone are one input; arrays of them are several.
        #expect(EmbeddingCall.inputs(of: [1, 2, 3]) == [[1, 2, 3]])
        #expect(EmbeddingCall.inputs(of: [[1, 2], [3]]) == [[1, 2], [3]])
        #expect(EmbeddingCall.inputs(of: nil).isEmpty)
        #expect(EmbeddingCall.inputs(of: []).isEmpty)
    }

    /// Holders take turns: no two are inside at once, and none is left waiting.
    @Test func aGateLetsOneHolderInAtATime() async {
        let gate = SerialGate()
        let inside = Occupancy()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    await gate.acquire()
                    inside.state.withLock {
                        $0.now += 1
                        $0.most = max($0.most, $0.now)
                    }
                    await Task.yield()
                    inside.state.withLock {
                        $0.now -= 1
                        $0.done += 1
                    }
                    gate.release()
                }
            }
        }
        #expect(inside.state.withLock { $0.most } == 1)
        #expect(inside.state.withLock { $0.done } == 20)
    }
}

private final class Occupancy: Sendable {
    let state = Mutex((now: 0, most: 0, done: 0))
}
