import Foundation
import HearthTesting
import Logging
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthNode

/// One real node serving several catalog models with real engines: on-demand loads, least-recently-used eviction,
/// downloads on first use, and refused files.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct MultiModelTests {
    /// The default model's entry under another id: a second catalog model with a real file.
    static func copy(_ id: String, sources: [String]? = nil, sha256: SHA256Digest = DefaultModel.sha256) throws -> CatalogEntry {
        var entry = try #require(Catalog.builtin[DefaultModel.id])
        entry.id = ModelID(id)!
        entry.name = id
        entry.sha256 = sha256
        if let sources { entry.sources = sources }
        return entry
    }

    static let limits = NodeLimits(threads: 1, contextSize: 512, parallelSlots: 1)

    static func spec(_ entry: CatalogEntry, directory: String) throws -> ModelSpec {
        try #require(ModelSpec(entry: entry, directory: directory, limits: limits))
    }

    /// Sends one chat request through the gateway; returns the status and the parsed body.
    static func chat(_ mesh: InProcessMesh, model: ModelID) async throws -> (status: Int, body: JSONValue) {
        let body: JSONValue = ["model": .string(model.rawValue), "max_tokens": 4, "messages": [["role": "user", "content": "Hi"]]]
        let reply = try await HTTP.post(mesh.apiURL + "/v1/chat/completions", json: body)
        return (reply.status, reply.json)
    }

    static func waitFor(_ what: String, _ condition: () -> Bool) async throws {
        for _ in 0..<600 {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestProcessError("timed out waiting for \(what)")
    }

    static func states(_ node: Node) -> [EngineState] { node.engines.map(\.snapshot.state) }

    /// Waits until the gateway's registry has the model in `state`: the node's own state reaches the gateway with
    /// its next report, a moment later.
    static func waitForGateway(_ mesh: InProcessMesh, _ model: ModelID, _ state: EngineState) async throws {
        try await waitFor("the gateway to see \(model) \(state)") {
            mesh.gateway.registry.announcements().contains { $0.models.contains { $0.id == model && $0.state == state } }
        }
    }

    @Test func loadsOnDemandAndEvictsTheLeastRecentlyUsedIdleModel() async throws {
        let directory = (try TestEnvironment.defaultModel() as NSString).deletingLastPathComponent
        let a = try Self.copy("smollm2-a:q4_1")
        let b = try Self.copy("smollm2-b:q4_1")
        let c = try Self.copy("smollm2-c:q4_1")
        let catalog = Catalog.builtin.merged(with: try Catalog(entries: [a, b, c]))
        let specs = try [a, b, c].map { try Self.spec($0, directory: directory) }
        let withCatalog: (inout GatewayConfiguration) -> Void = { $0.catalog = catalog }
        try await InProcessMesh.with(label: "multi-model", configure: withCatalog) { mesh in
            // Room for two engines, not three.
            let budget = specs[0].memoryBytes * 5 / 2
            let node = try await buildNode(
                configuration: mesh.nodeConfiguration().with {
                    $0.dataDirectory = (try? TestEnvironment.temporaryDirectory("multi-node")) ?? "."
                    $0.catalog = catalog
                    $0.models = specs
                    $0.limits = Self.limits
                    $0.limits.memoryBytes = budget
                    $0.llamaServerPath = (try? TestEnvironment.llamaServer()) ?? "llama-server"
                    $0.dashboardPort = nil
                },
                logger: Logger(label: "node")
            )
            mesh.run(node)
            // The first two load at start; the third waits in standby and is listed as servable.
            try await Self.waitFor("two engines ready") { Self.states(node) == [.ready, .ready, .standby] }
            try await Self.waitFor("the gateway to see it") {
                mesh.gateway.registry.readyModels().map(\.model.id) == [a.id, b.id, c.id]
            }
            // Use b, so a is the least recently used idle engine.
            #expect(try await Self.chat(mesh, model: b.id).status == 200)
            let answer = try await Self.chat(mesh, model: c.id)
            #expect(answer.status == 200, "\(answer.body)")
            #expect(answer.body["choices"]?[0]?["message"]?["content"]?.stringValue?.isEmpty == false)
            #expect(Self.states(node) == [.standby, .ready, .ready])
            #expect(node.engines[0].snapshot.pid == nil, "the evicted engine's process is gone")
            let startsBefore = node.engines[0].snapshot.starts
            // And back: a is loaded again, evicting b (now the least recently used).
            #expect(try await Self.chat(mesh, model: a.id).status == 200)
            #expect(Self.states(node) == [.ready, .standby, .ready])
            // Started again for the request (more than once if a free loopback port was taken before it bound it).
            #expect(node.engines[0].snapshot.starts > startsBefore)
        }
    }

    @Test func downloadsAMissingFileOnFirstUseAndRefusesTamperedAndOffCatalogFiles() async throws {
        let modelBytes = try #require(FileManager.default.contents(atPath: try TestEnvironment.defaultModel()))
        let server = try await FileServer.start(files: ["smol.gguf": modelBytes])
        defer { Task { await server.stop() } }
        let store = try TestEnvironment.temporaryDirectory("multi-store")
        let tamperedHash = SHA256Digest(hex: String(repeating: "7", count: 64))!
        // A file under the tampered entry's name whose bytes have another hash.
        try Data(modelBytes.prefix(1 << 20)).write(to: URL(fileURLWithPath: store + "/\(tamperedHash.hex).gguf"))
        let remote = try Self.copy("smollm2-remote:q4_1", sources: [server.url("smol.gguf")])
        let tampered = try Self.copy("smollm2-tampered:q4_1", sha256: tamperedHash)
        let catalog = Catalog.builtin.merged(with: try Catalog(entries: [remote, tampered]))
        let withCatalog: (inout GatewayConfiguration) -> Void = { $0.catalog = catalog }
        try await InProcessMesh.with(label: "download", configure: withCatalog) { mesh in
            var configuration = mesh.nodeConfiguration().with {
                $0.dataDirectory = (try? TestEnvironment.temporaryDirectory("download-node")) ?? "."
                $0.catalog = catalog
                $0.limits = Self.limits
                $0.llamaServerPath = (try? TestEnvironment.llamaServer()) ?? "llama-server"
                $0.dashboardPort = nil
            }
            // Off the catalog, or under a hash the catalog does not pin: the node refuses to start with them.
            let rogue = ModelSpec(id: ModelID("rogue:q8_0")!, path: store + "/rogue.gguf", sha256: DefaultModel.sha256)
            let wrongHash = ModelSpec(id: DefaultModel.id, path: try TestEnvironment.defaultModel(), sha256: tamperedHash)
            for spec in [rogue, wrongHash] {
                do {
                    _ = try await buildNode(configuration: configuration.with { $0.models = [spec] }, logger: Logger(label: "node"))
                    Issue.record("\(spec.id) must be refused")
                } catch let error as NodeStartError {
                    #expect(error.description.contains("catalog"), "\(error)")
                }
            }
            configuration.models = [try Self.spec(remote, directory: store), try Self.spec(tampered, directory: store)]
            configuration.limits.memoryBytes = 4 << 30
            let node = try await buildNode(configuration: configuration, logger: Logger(label: "node"))
            mesh.run(node)
            // Nothing is on disk for the first model: it downloads before it loads.
            try await Self.waitForGateway(mesh, remote.id, .ready)
            #expect(FileManager.default.contents(atPath: store + "/\(DefaultModel.sha256.hex).gguf")?.count == modelBytes.count)
            #expect(server.rangesSeen == [""])
            #expect(try await Self.chat(mesh, model: remote.id).status == 200)
            // The tampered file is hashed, refused, and never handed to an engine; the node reports why, and the
            // gateway sends nothing its way.
            #expect(node.engines[1].snapshot.state == .failed)
            #expect(node.engines[1].snapshot.starts == 0)
            let reported = mesh.gateway.registry.announcements().first?.models.first { $0.id == tampered.id }
            #expect(reported?.state == .failed)
            #expect(reported?.detail?.contains("refusing to load it") == true, "\(String(describing: reported))")
            let refused = try await Self.chat(mesh, model: tampered.id)
            #expect(refused.status == 503, "\(refused.body)")
        }
    }

    @Test func aSlowDownloadHoldsUpNeitherTheLinkNorTheOtherModels() async throws {
        let modelBytes = try #require(FileManager.default.contents(atPath: try TestEnvironment.defaultModel()))
        let server = try await FileServer.start(files: ["smol.gguf": modelBytes])
        defer { Task { await server.stop() } }
        // Held until the test has seen what it looks for: a fixed stall ended too soon on a busy machine.
        server.then(.holdAfter(bytes: 12 << 20))
        let directory = (try TestEnvironment.defaultModel() as NSString).deletingLastPathComponent
        let store = try TestEnvironment.temporaryDirectory("slow-store")
        let local = try #require(Catalog.builtin[DefaultModel.id])
        let remote = try Self.copy("smollm2-slow:q4_1", sources: [server.url("smol.gguf")])
        let catalog = Catalog.builtin.merged(with: try Catalog(entries: [remote]))
        let withCatalog: (inout GatewayConfiguration) -> Void = { $0.catalog = catalog }
        try await InProcessMesh.with(label: "slow-download", configure: withCatalog) { mesh in
            let node = try await buildNode(
                configuration: mesh.nodeConfiguration().with {
                    $0.dataDirectory = (try? TestEnvironment.temporaryDirectory("slow-node")) ?? "."
                    $0.catalog = catalog
                    $0.limits = Self.limits
                    $0.limits.memoryBytes = 4 << 30
                    $0.models = [(try? Self.spec(local, directory: directory)), (try? Self.spec(remote, directory: store))].compactMap { $0 }
                    $0.llamaServerPath = (try? TestEnvironment.llamaServer()) ?? "llama-server"
                    $0.dashboardPort = nil
                },
                logger: Logger(label: "node")
            )
            #expect(node.engines.count == 2)
            mesh.run(node)
            try await Self.waitForGateway(mesh, DefaultModel.id, .ready)
            try await Self.waitFor("the download to stall") { node.engines[1].snapshot.detail?.hasPrefix("downloading ") == true }
            // Mid-download: the other model answers, and the gateway hears about the progress over the link.
            let answer = try await Self.chat(mesh, model: DefaultModel.id)
            #expect(answer.status == 200, "\(answer.body)")
            try await Self.waitFor("the gateway to see the progress") {
                let reported = mesh.gateway.registry.announcements().first?.models.first { $0.id == remote.id }
                return reported?.state == .loading && reported?.detail?.hasPrefix("downloading ") == true
            }
            #expect(node.engines[1].snapshot.state == .loading, "still downloading: \(String(describing: node.engines[1].snapshot.detail))")
            server.releaseHeld()
            try await Self.waitForGateway(mesh, remote.id, .ready)
            #expect(try await Self.chat(mesh, model: remote.id).status == 200)
        }
    }
}
