import AsyncHTTPClient
import HearthTesting
import Hummingbird
import HummingbirdCore
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import HearthGateway

/// The gateway's HTTP server runs each connection's handlers on the connection's event loop, over real sockets.
///
/// Server and client run on an event loop group of the test's own, and the client waits long: on NIO's shared loops,
/// which the rest of the suite loads with its own servers, a full run beside a CPU hog saw the connection alone take
/// over 10 s.
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
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(120), read: .seconds(120))
        let client = HTTPClient(eventLoopGroupProvider: .shared(group), configuration: configuration)
        do {
            let answers = try await LoopbackServer.with(router: router(), name: "event-loop-test", server: server, eventLoopGroup: group) {
                port in
                var answers: [String] = []
                for _ in 0..<3 {
                    answers.append(try await Self.ask(client, HTTPClientRequest(url: "http://127.0.0.1:\(port)/where")))
                }
                var echo = HTTPClientRequest(url: "http://127.0.0.1:\(port)/echo")
                echo.method = .POST
                echo.body = .bytes(ByteBuffer(repeating: 7, count: 200_000))
                answers.append(try await Self.ask(client, echo))
                return answers
            }
            try await client.shutdown()
            try await group.shutdownGracefully()
            return answers
        } catch {
            try? await client.shutdown()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    static func ask(_ client: HTTPClient, _ request: HTTPClientRequest) async throws -> String {
        let response = try await client.execute(request, timeout: .seconds(180))
        return String(buffer: try await response.body.collect(upTo: 1 << 20))
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
