import Hummingbird
import Logging
import ServiceLifecycle

/// A Hummingbird server on a free port of 127.0.0.1, running in the test process until `stop()`: what the test
/// servers (`FileServer`, `FakeOpenAIServer`) stand on.
final class LoopbackServer: Sendable {
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    private init(port: Int, group: ServiceGroup, task: Task<Void, any Error>) {
        self.port = port
        self.group = group
        self.task = task
    }

    /// Starts `router` and returns once it listens.
    static func start<Context>(router: Router<Context>, name: String) async throws -> LoopbackServer
    where Context: InitializableFromSource<ApplicationRequestContextSource> {
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let application = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: name),
            onServerRunning: { sink.yield($0.localAddress?.port ?? 0) },
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
