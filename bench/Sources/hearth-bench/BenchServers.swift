import AsyncHTTPClient
import Foundation
import HearthCore
import HearthGateway
import HearthNode
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

/// The benchmark's own server processes, so the gateway and the fake node each have a CPU count of their own
/// (`usage`).
enum BenchServers {
    static let usage = """
        USAGE: hearth-bench MODE [options]

        The benchmark's own server processes, which its parts start; each runs until it is stopped.

        MODES:
          fake-node --listen        a fake node over plain HTTP on 127.0.0.1 (canned tokens), prints READY url=…
          fake-node --join JOIN     the same over a link to a gateway, prints READY node=…
          plain-gateway --node URL  a gateway reaching that node over plain HTTP, prints READY url=…
          mock-upstream             a paced OpenAI-compatible server (MockUpstream), prints READY url=…
        """

    static let model = ModelID("fake:canned")!
    static let tokens = 32

    /// A catalog that pins the fake node's model (the default model's entry under the fake id and hash).
    static func catalog() throws -> Catalog {
        guard var entry = Catalog.builtin[DefaultModel.id] else { throw BenchError("the built-in catalog lacks the default model") }
        entry.id = model
        entry.name = "canned tokens (benchmark)"
        return try Catalog(entries: [entry])
    }

    static func report(slots: Int) -> NodeReport {
        NodeReport(
            name: "fake",
            hardware: HardwareProfile(cpuCores: 1, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskFreeBytes: 1, gpus: []),
            limits: NodeLimits(threads: 1, contextSize: 512, parallelSlots: slots),
            models: [ServedModel(id: model, sha256: DefaultModel.sha256, contextLength: 512, sizeBytes: 1, state: .ready)],
            inFlight: 0,
            draining: false,
            version: HearthVersion.current
        )
    }

    static func run(_ arguments: [String]) async throws {
        func option(_ name: String) -> String? {
            arguments.firstIndex(of: name).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        let fake = FakeNode(tokens: tokens, report: report(slots: 256))
        let service: any Service
        switch arguments.first {
        case "fake-node" where option("--join") != nil:
            let join = try JoinAddress(parsing: option("--join")!)
            let identity = NodeIdentity(key: .generate())
            service = buildLinkService(
                router: try fake.router(),
                identity: identity,
                configuration: NodeConfiguration().with { $0.join = join },
                logger: logger
            )
            announce("READY node=\(identity.id)")
        case "mock-upstream":
            service = Application(
                router: MockUpstream().router(),
                configuration: .init(address: .hostname("127.0.0.1", port: 0), backlog: 4096),
                onServerRunning: { channel in announce("READY url=http://127.0.0.1:\(channel.localAddress?.port ?? 0)") },
                logger: logger
            )
        case "fake-node":
            service = Application(
                router: try fake.router(),
                configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in announce("READY url=http://127.0.0.1:\(channel.localAddress?.port ?? 0)") },
                logger: logger
            )
        case "plain-gateway":
            guard let url = option("--node") else { throw BenchError("plain-gateway needs --node URL") }
            let node = NodeID.random()
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            let gateway = try await buildGateway(
                configuration: GatewayConfiguration().with {
                    $0.port = 0
                    $0.dataDirectory = option("--data-dir")
                    $0.rateLimitPerMinute = 100_000_000
                    $0.reciprocity = Reciprocity(floorTokensPerHour: 1e12, ceilingTokensPerHour: 1e12)
                },
                transport: PlainHTTPNodeTransport(client: client, endpoints: [node: url]),
                logger: logger,
                onServerRunning: { port in announce("READY url=http://127.0.0.1:\(port)") }
            )
            // No link brings this node's report: record it as the mesh would, and keep it fresh.
            let registry = gateway.registry
            registry.upsert(NodeAnnouncement(nodeID: node, account: nil, report: report(slots: 256)))
            let refresh = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(2))
                    registry.upsert(NodeAnnouncement(nodeID: node, account: nil, report: report(slots: 256)))
                }
            }
            defer { refresh.cancel() }
            try await ServiceGroup(
                configuration: .init(services: gateway.services, gracefulShutdownSignals: [.sigterm], logger: logger)
            ).run()
            try await client.shutdown()
            return
        default:
            throw BenchError("unknown mode '\(arguments.first ?? "")'\n\n\(usage)\n\nhearth-bench --help lists the benchmark's parts")
        }
        try await ServiceGroup(configuration: .init(services: [service], gracefulShutdownSignals: [.sigterm], logger: logger)).run()
    }
}

/// A line on standard output at once (a pipe would buffer `print`).
func announce(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
