import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ServiceLifecycle
import Testing

@testable import HearthCore
@testable import HearthGateway

let testModel = ModelID("tiny:q8_0")!
let nodeA = NodeID(String(repeating: "a", count: 64))!
let nodeB = NodeID(String(repeating: "b", count: 64))!

/// The gateway tests' configuration: any free port, a real SQLite file in a temporary folder, small limits.
func testConfiguration() -> GatewayConfiguration {
    GatewayConfiguration().with {
        $0.port = 0
        $0.dataDirectory = try? TestEnvironment.temporaryDirectory("gateway")
        $0.limits = RequestLimits(maxTokensCeiling: 64)
        $0.maxBodyBytes = 4096
        // Nodes are announced once by hand: they must not expire while a slow, loaded test runs.
        $0.nodeTTL = .seconds(600)
    }
}

/// A gateway with a real SQLite file in a temporary folder and a fake node transport.
func makeGateway(
    _ behaviours: [NodeID: FakeNodeTransport.Behaviour],
    configure: (inout GatewayConfiguration) -> Void = { _ in }
) async throws -> (Gateway, FakeNodeTransport) {
    let transport = FakeNodeTransport(behaviours)
    var configuration = testConfiguration()
    configure(&configuration)
    let gateway = try await buildGateway(configuration: configuration, transport: transport, logger: Logger(label: "test"))
    return (gateway, transport)
}

func announcement(_ id: NodeID, state: EngineState = .ready, slots: Int = 2, model: ModelID = testModel) -> NodeAnnouncement {
    NodeAnnouncement(
        nodeID: id,
        report: NodeReport(
            name: "n",
            hardware: HardwareProfile(cpuCores: 2, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskFreeBytes: 1, gpus: []),
            limits: NodeLimits(threads: 1, contextSize: 512, parallelSlots: slots),
            models: [
                ServedModel(id: model, sha256: SHA256Digest(hex: String(repeating: "0", count: 64))!, contextLength: 512, sizeBytes: 10, state: state)
            ],
            inFlight: 0,
            draining: false,
            version: "test"
        )
    )
}

/// Records a node's report in the registry, as the mesh does when it polls a linked node (the link itself is
/// tested with real nodes in HearthIntegrationTests).
/// A pinned entry of an operator's catalog (any file: the hash is all zeros, as `announcement` reports it).
func pinnedEntry(
    _ id: String,
    family: String,
    parameters: UInt64 = 1,
    tier: ModelTier = .tiny,
    shape: ModelShape = ModelShape(layers: 1, kvHeads: 1, headDim: 1, embedding: 1)
) -> CatalogEntry {
    CatalogEntry(
        id: ModelID(id)!,
        name: id,
        family: family,
        parameters: parameters,
        tier: tier,
        quantization: "Q8_0",
        contextLength: 512,
        licence: "MIT",
        sizeBytes: 1000,
        shape: shape,
        sources: [],
        sha256: SHA256Digest(hex: String(repeating: "0", count: 64))
    )
}

func announce(_ gateway: Gateway, _ node: NodeAnnouncement) {
    gateway.registry.upsert(node)
}

func json(_ value: JSONValue) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONEncoder().encode(value))
}

func decode(_ buffer: ByteBuffer) -> JSONValue {
    (try? JSONDecoder().decode(JSONValue.self, from: Data(buffer.readableBytesView))) ?? .null
}

let chatBody: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]]]

/// Logs `key` in (challenge, signed nonce) and returns its bearer token.
func loginToken(_ client: some TestClientProtocol, _ key: IdentityKey) async throws -> String {
    let nonce = try await client.execute(
        uri: "/api/auth/challenge",
        method: .post,
        body: try json(["public_key": .string(key.publicKey.base64EncodedString())])
    ) { try #require(decode($0.body)["nonce"]?.stringValue) }
    let body: JSONValue = [
        "public_key": .string(key.publicKey.base64EncodedString()), "nonce": .string(nonce),
        "signature": .string(try key.sign(LoginProtocol.message(nonce: nonce)).base64EncodedString()),
    ]
    return try await client.execute(uri: "/api/auth/verify", method: .post, body: try json(body)) {
        try #require(decode($0.body)["token"]?.stringValue)
    }
}

/// Runs `body` against a gateway (fake node transport) listening on a real loopback port, then stops it.
func withLiveGateway(
    _ behaviours: [NodeID: FakeNodeTransport.Behaviour] = [:],
    transport: FakeNodeTransport? = nil,
    configure: (inout GatewayConfiguration) -> Void = { _ in },
    _ body: (_ gateway: Gateway, _ port: Int) async throws -> Void
) async throws {
    let (ports, sink) = AsyncStream.makeStream(of: Int.self)
    var configuration = testConfiguration()
    configure(&configuration)
    let gateway = try await buildGateway(
        configuration: configuration,
        transport: transport ?? FakeNodeTransport(behaviours),
        logger: Logger(label: "test"),
        onServerRunning: { sink.yield($0) }
    )
    let group = ServiceGroup(configuration: .init(services: gateway.services, logger: Logger(label: "test")))
    let running = Task { try await group.run() }
    defer { running.cancel() }
    guard let port = await ports.first(where: { _ in true }) else { throw TestProcessError("the gateway did not start") }
    let outcome: Result<Void, any Error>
    do {
        try await body(gateway, port)
        outcome = .success(())
    } catch {
        outcome = .failure(error)
    }
    await group.triggerGracefulShutdown()
    _ = await running.result
    try outcome.get()
}
