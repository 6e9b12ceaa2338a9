import Hummingbird
import HummingbirdCore
import HummingbirdTesting
import NIOCore
import NIOPosix
import Testing

@testable import HearthGateway

/// The gateway's HTTP server runs each connection's handlers on the connection's event loop, over real sockets.
struct EventLoopServerTests {
    /// Answers whether the handler ran on an event loop's thread (the cooperative pool's threads are none).
    static func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/where") { _, _ in
            MultiThreadedEventLoopGroup.currentEventLoop == nil ? "pool" : "event loop"
        }
        router.post("/echo") { request, _ in
            // A body read in parts, and an await of another thread's work, come back to the loop.
            let body = try await request.body.collect(upTo: 1 << 20)
            try await Task.sleep(for: .milliseconds(1))
            let after = MultiThreadedEventLoopGroup.currentEventLoop == nil ? "pool" : "event loop"
            return "\(body.readableBytes) \(after)"
        }
        return router
    }

    static func place(_ server: HTTPServerBuilder) async throws -> [String] {
        let application = Application(router: router(), server: server, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        // AsyncHTTPClient as the client: it waits 10 s for a connection and 15 s for an answer, where the `.live`
        // client's fixed 5 s connect timeout ran out on a machine busy with the rest of the suite.
        return try await application.test(.ahc(.http)) { client in
            var answers: [String] = []
            for _ in 0..<3 {
                try await client.execute(uri: "/where", method: .get) { answers.append(String(buffer: $0.body)) }
            }
            try await client.execute(uri: "/echo", method: .post, body: ByteBuffer(repeating: 7, count: 200_000)) {
                answers.append(String(buffer: $0.body))
            }
            return answers
        }
    }

    @Test func handlersRunOnTheirConnectionsEventLoop() async throws {
        let answers = try await Self.place(.http1OnEventLoops(configuration: .init()))
        #expect(answers == ["event loop", "event loop", "event loop", "200000 event loop"])
    }

    /// The control: Hummingbird's own server runs them in the pool, which the test above tells apart.
    @Test func hummingbirdsOwnServerRunsThemInThePool() async throws {
        let answers = try await Self.place(.http1())
        #expect(answers == ["pool", "pool", "pool", "200000 pool"])
    }
}
