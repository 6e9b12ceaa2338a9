import HearthMesh
import NIOCore
import NIOPosix
import Testing

@testable import HearthGateway

/// The router, the middlewares and the handler run in a task of their own (`GatewayResponder.inOwnTask`), whose memory
/// is gone once the response is returned instead of staying with the connection's task for as long as a stream is
/// written.
struct RequestTaskTests {
    @Test func theWayInRunsInATaskOfItsOwnAndItsAnswerComesBack() async throws {
        let caller = withUnsafeCurrentTask { $0?.hashValue }
        let (answer, runner) = try await GatewayResponder.inOwnTask {
            (20 + 22, withUnsafeCurrentTask { $0?.hashValue })
        }
        #expect(answer == 42)
        #expect(runner != nil && runner != caller, "the way in ran in the caller's task")

        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            try await GatewayResponder.inOwnTask { () async throws -> Int in throw Refused() }
        }
    }

    /// The gateway's connections run their handlers on the connection's event loop (`EventLoopServerTests`): the task
    /// keeps to it.
    @Test func theWayInStaysOnTheConnectionsEventLoop() async throws {
        let loop = MultiThreadedEventLoopGroup.singleton.any()
        let ranOn = try await withTaskExecutorPreference(EventLoopExecutor(loop)) {
            try await GatewayResponder.inOwnTask {
                // After a suspension too: the task's preference, not only where it started.
                await Task.yield()
                return loop.inEventLoop
            }
        }
        #expect(ranOn, "the way in left the connection's event loop")
    }

    /// A task-local the connection set (its `ClientWatch`) is seen by the way in.
    @Test func theWayInSeesTheConnectionsTaskLocals() async throws {
        let seen = try await RequestTaskProbe.$value.withValue(7) {
            try await GatewayResponder.inOwnTask { RequestTaskProbe.value }
        }
        #expect(seen == 7)
    }

    /// A request's task that is cancelled (Hummingbird's, at shutdown) cancels the way in.
    @Test func cancellingTheCallerCancelsTheWayIn() async throws {
        let started = AsyncStream<Void>.makeStream()
        let caller = Task {
            try await GatewayResponder.inOwnTask { () async throws -> Bool in
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

private enum RequestTaskProbe {
    @TaskLocal static var value = 0
}
