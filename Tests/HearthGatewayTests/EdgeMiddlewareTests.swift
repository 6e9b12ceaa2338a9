import HearthMesh
import NIOCore
import NIOPosix
import Testing

@testable import HearthGateway

/// The middlewares and the handler run in a child task (`EdgeMiddleware.inChildTask`), whose memory is gone once the
/// response is returned instead of staying with the connection's task for as long as a stream is written.
struct EdgeMiddlewareTests {
    @Test func theChainRunsInAChildTaskAndItsAnswerComesBack() async throws {
        let caller = withUnsafeCurrentTask { $0?.hashValue }
        let (answer, runner) = try await EdgeMiddleware.inChildTask(20, 22) { input, state in
            (input + state, withUnsafeCurrentTask { $0?.hashValue })
        }
        #expect(answer == 42)
        #expect(runner != nil && runner != caller, "the chain ran in the caller's task")

        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await EdgeMiddleware.inChildTask(1, 2) { (_: Int, _: Int) -> Int in throw Refused() }
        }
    }

    /// The gateway's connections run their handlers on the connection's event loop (`EventLoopServerTests`): the child
    /// keeps to it, as a child task keeps its parent's executor preference.
    @Test func theChainStaysOnTheConnectionsEventLoop() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let ranOn = try await withTaskExecutorPreference(EventLoopExecutor(loop)) {
            try await EdgeMiddleware.inChildTask(0, 0) { (_: Int, _: Int) -> Bool in loop.inEventLoop }
        }
        #expect(ranOn, "the chain left the connection's event loop")
    }

    /// A request's task that is cancelled (Hummingbird's, at shutdown) cancels the chain's.
    @Test func cancellingTheCallerCancelsTheChain() async throws {
        let started = AsyncStream<Void>.makeStream()
        let caller = Task {
            try await EdgeMiddleware.inChildTask(0, 0) { (_: Int, _: Int) -> Bool in
                started.continuation.yield()
                // Until cancelled (the test's own bound ends it otherwise).
                try await Task.sleep(for: .seconds(60))
                return false
            }
        }
        for await _ in started.stream { break }
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
    }
}
