import Foundation
import HearthTesting
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

@testable import HearthCore
@testable import HearthGateway
@testable import HearthNode

/// A gateway with its real mesh (TLS 1.3, HTTP/2 on loopback) in this process, and stand-in nodes that join it
/// with their own keys and routers: for what needs no engine.
final class InProcessMesh: Sendable {
    let gateway: Gateway
    let meshPort: Int
    /// The gateway's API, on 127.0.0.1.
    let apiURL: String
    private let groups = Mutex<[(ServiceGroup, Task<Void, any Error>)]>([])

    private init(gateway: Gateway, meshPort: Int, apiPort: Int) {
        self.gateway = gateway
        self.meshPort = meshPort
        self.apiURL = "http://127.0.0.1:\(apiPort)"
    }

    /// Runs `body` with a gateway whose mesh listens on loopback, then shuts everything down gracefully.
    static func with(
        label: String,
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        _ body: (InProcessMesh) async throws -> Void
    ) async throws {
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let (apiPorts, apiSink) = AsyncStream.makeStream(of: Int.self)
        var configuration = GatewayConfiguration().with {
            $0.port = 0
            $0.meshHost = "127.0.0.1"
            $0.meshPort = 0
            $0.dataDirectory = try? TestEnvironment.temporaryDirectory(label)
            $0.linkPollInterval = .milliseconds(300)
            // The node answers from this test process, which shares two cores with the whole parallel suite (pools
            // included) and a CPU hog in CI: a poll late by seconds is load here, not a silent node. Liveness is
            // tested with real processes (LinkLivenessTests). The same holds for the TTL: this process was seen to stall
            // for over 20 s beside stress-ng, and its own node then expired from its own gateway.
            $0.linkAnswerTimeout = .seconds(30)
            $0.nodeTTL = .seconds(90)
        }
        configure(&configuration)
        let gateway = try await buildGateway(
            configuration: configuration,
            logger: Logger(label: "gateway"),
            onServerRunning: { apiSink.yield($0) },
            onMeshListening: { sink.yield($0) }
        )
        let services = ServiceGroup(configuration: .init(services: gateway.services, logger: Logger(label: "gateway")))
        let running = Task { try await services.run() }
        guard let port = await ports.first(where: { _ in true }), let apiPort = await apiPorts.first(where: { _ in true }) else {
            throw TestProcessError("the gateway did not start")
        }
        let mesh = InProcessMesh(gateway: gateway, meshPort: port, apiPort: apiPort)
        let outcome: Result<Void, any Error>
        do {
            try await body(mesh)
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        // Nodes first, then the gateway, as a real shutdown would go.
        for (group, task) in mesh.groups.withLock({ $0 }) {
            await group.triggerGracefulShutdown()
            _ = await task.result
        }
        await services.triggerGracefulShutdown()
        _ = await running.result
        try outcome.get()
    }

    /// Starts a stand-in node that joins with `key`, serving `router` (plus the configuration's tunnels).
    func join(key: IdentityKey, router: Router<BasicRequestContext>, configure: (inout NodeConfiguration) -> Void = { _ in }) {
        var configuration = NodeConfiguration().with { $0.join = JoinAddress(host: "127.0.0.1", port: meshPort, gatewayID: gateway.id) }
        configure(&configuration)
        let link = buildLinkService(router: router, identity: NodeIdentity(key: key), configuration: configuration, logger: Logger(label: "node"))
        let node = ServiceGroup(configuration: .init(services: [link], logger: Logger(label: "node")))
        groups.withLock { $0.append((node, Task { try await node.run() })) }
    }

    /// Runs a real node (engines and all) built for this gateway until the mesh shuts down.
    func run(_ node: Node) {
        let group = ServiceGroup(configuration: .init(services: node.services, logger: Logger(label: "node")))
        groups.withLock { $0.append((group, Task { try await group.run() })) }
    }

    /// The configuration of a real node that joins this gateway.
    func nodeConfiguration() -> NodeConfiguration {
        NodeConfiguration().with { $0.join = JoinAddress(host: "127.0.0.1", port: meshPort, gatewayID: gateway.id) }
    }

    /// Waits until the registry lists `count` nodes.
    func waitForNodes(_ count: Int) async throws -> [NodeAnnouncement] {
        for _ in 0..<200 {
            let announcements = gateway.registry.announcements()
            if announcements.count == count { return announcements }
            try await Task.sleep(for: .milliseconds(25))
        }
        throw TestProcessError("the gateway did not list \(count) nodes")
    }

    /// A router that answers the gateway's hello and report polls with a fixed report.
    static func standInRouter(
        report: NodeReport,
        extraHello: String = "",
        extraReport: [String: JSONValue] = [:],
        onPoll: @escaping @Sendable (_ holdMilliseconds: Int) -> Void = { _ in }
    ) throws -> Router<
        BasicRequestContext
    > {
        let router = Router()
        var reportJSON = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(report))
        for (key, value) in extraReport { reportJSON[key] = value }
        let reportBytes = ByteBuffer(bytes: try JSONEncoder().encode(reportJSON))
        let helloBytes = ByteBuffer(string: #"{"version":"test"\#(extraHello)}"#)
        router.get("/link/v1/hello") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: helloBytes))
        }
        router.get("/link/v1/report") { request, _ in
            // The state never changes: hold a long poll for as long as the gateway asked, like a real node.
            let wait = request.headers[.init("x-hearth-wait-ms")!].flatMap { Int($0) } ?? 0
            onPoll(wait)
            if request.headers[.init("x-hearth-after")!] != nil {
                try await Task.sleep(for: .milliseconds(min(wait, 60_000)))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: reportBytes))
        }
        return router
    }

    static func report(model: ModelID) -> NodeReport {
        NodeReport(
            name: "stand-in",
            hardware: HardwareProfile(cpuCores: 1, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskFreeBytes: 1, gpus: []),
            limits: NodeLimits(threads: 1, contextSize: 512, parallelSlots: 1),
            models: [ServedModel(id: model, sha256: DefaultModel.sha256, contextLength: 512, sizeBytes: 1, state: .ready)],
            inFlight: 0,
            draining: false,
            version: "test"
        )
    }
}
