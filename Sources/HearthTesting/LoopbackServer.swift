package import Hummingbird
package import HummingbirdCore
import Logging
package import NIOCore
import ServiceLifecycle

/// A Hummingbird server on a free port of 127.0.0.1, running in the test process until `stop()`: what the test
/// servers (`FileServer`, `FakeOpenAIServer`) and the tests' fake engines stand on.
///
/// Stopped gracefully rather than by cancelling its task, as NIO's maintainers advise: a connection a server accepts
/// as its serving task ends can be dropped unread, and NIO then traps on its unfinished writer, which takes the whole
/// test process down (NIO issue 2813; a full run crashed so once). The window is narrower this way, not closed.
package final class LoopbackServer: Sendable {
    package let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    /// Runs `body` with the port of a server for `router`, which is stopped gracefully however `body` ends. `server`
    /// is Hummingbird's own unless given; it runs on `eventLoopGroup` (NIO's shared one unless given: a test whose
    /// timing must not depend on what the rest of the suite runs there gives its own).
    package static func with<Context, Result: Sendable>(
        router: Router<Context>,
        name: String,
        server: HTTPServerBuilder = .http1(),
        eventLoopGroup: (any EventLoopGroup)? = nil,
        _ body: (_ port: Int) async throws -> Result
    ) async throws -> Result where Context: InitializableFromSource<ApplicationRequestContextSource> {
        let server = try await start(router: router, name: name, server: server, eventLoopGroup: eventLoopGroup)
        do {
            let result = try await body(server.port)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// Starts `router` and returns once it listens.
    static func start<Context>(
        router: Router<Context>,
        name: String,
        server: HTTPServerBuilder = .http1(),
        eventLoopGroup: (any EventLoopGroup)? = nil
    ) async throws -> LoopbackServer
    where Context: InitializableFromSource<ApplicationRequestContextSource> {
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            router: router,
            server: server,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: name),
            onServerRunning: { sink.yield($0.localAddress?.port ?? 0) },
            eventLoopGroupProvider: eventLoopGroup.map { .shared($0) } ?? .singleton,
            logger: Logger(label: name)
        )
        let group = ServiceGroup(configuration: .init(services: [application], logger: Logger(label: name)))
        let task = Task { try await group.run() }
        guard let port = await ports.first(where: { _ in true }) else { throw TestProcessError("the \(name) server did not start") }
        return LoopbackServer(port: port, group: group, task: task)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}
