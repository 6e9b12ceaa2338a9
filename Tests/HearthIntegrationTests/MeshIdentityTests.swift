import Foundation
import HearthCore
import HearthGateway
import HearthNode
import HearthTesting
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// A gateway and stand-in nodes in this process, over the real mesh (TLS 1.3, HTTP/2 on loopback): whatever a
/// node writes in its messages, it is registered as the key its handshake proved.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct MeshIdentityTests {
    /// A stand-in node: its own key, and a router that claims to be someone else in every message it sends.
    func impostorRouter(claiming victim: NodeID, model: ModelID) throws -> Router<BasicRequestContext> {
        let router = Router()
        var report = try JSONDecoder().decode(
            JSONValue.self,
            from: try JSONEncoder().encode(
                NodeReport(
                    name: "impostor",
                    hardware: HardwareProfile(cpuCores: 1, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskFreeBytes: 1, gpus: []),
                    limits: NodeLimits(threads: 1, contextSize: 512, parallelSlots: 1),
                    models: [ServedModel(id: model, sha256: DefaultModel.sha256, contextLength: 512, sizeBytes: 1, state: .ready)],
                    inFlight: 0,
                    draining: false,
                    version: "test"
                )
            )
        )
        report["nodeID"] = .string(victim.rawValue)
        report["account"] = .string(victim.rawValue)
        let reportBytes = ByteBuffer(bytes: try JSONEncoder().encode(report))
        let helloBytes = ByteBuffer(string: #"{"version":"test","nodeID":"\#(victim.rawValue)"}"#)
        router.get("/link/v1/hello") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: helloBytes))
        }
        router.get("/link/v1/report") { request, _ in
            if request.headers[.init("x-hearth-after")!] != nil { try await Task.sleep(for: .milliseconds(300)) }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: reportBytes))
        }
        return router
    }

    @Test func aNodeIsRegisteredUnderItsProvenKeyWhateverItsMessagesSay() async throws {
        let (ports, sink) = AsyncStream.makeStream(of: Int.self)
        let gateway = try await buildGateway(
            configuration: GatewayConfiguration().with {
                $0.port = 0
                $0.meshHost = "127.0.0.1"
                $0.meshPort = 0
                $0.dataDirectory = try? TestEnvironment.temporaryDirectory("mesh-identity")
                $0.linkPollInterval = .milliseconds(300)
            },
            logger: Logger(label: "gateway"),
            onMeshListening: { sink.yield($0) }
        )
        let victim = NodeID.random()
        let impostor = IdentityKey.generate()
        let services = ServiceGroup(configuration: .init(services: gateway.services, logger: Logger(label: "gateway")))
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await services.run() }
            let port = try #require(await ports.first { _ in true })
            let link = buildLinkService(
                router: try impostorRouter(claiming: victim, model: ModelID("impostor:q8_0")!),
                identity: NodeIdentity(key: impostor),
                configuration: NodeConfiguration().with { $0.join = JoinAddress(host: "127.0.0.1", port: port, gatewayID: gateway.id) },
                logger: Logger(label: "impostor")
            )
            let node = ServiceGroup(configuration: .init(services: [link], logger: Logger(label: "impostor")))
            group.addTask { try await node.run() }

            var announcements: [NodeAnnouncement] = []
            for _ in 0..<100 where announcements.isEmpty {
                try await Task.sleep(for: .milliseconds(50))
                announcements = gateway.registry.announcements()
            }
            #expect(announcements.map(\.nodeID) == [impostor.nodeID])
            #expect(announcements.first?.account == nil)
            #expect(!gateway.registry.routableNodes().contains { $0.id == victim })
            await node.triggerGracefulShutdown()
            await services.triggerGracefulShutdown()
        }
    }
}
