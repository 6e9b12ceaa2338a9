import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// What a gateway of a network answers for a model it has no node for (forwarding itself, over real peer links, is
/// tested with gateway processes in ScaleOutTests).
struct PeerForwardingTests {
    @Test func aModelOnlyAnUnreachableGatewayServesIsNotReadyRatherThanUnknown() async throws {
        let network = IdentityKey.generate()
        let (gateway, _) = try await makeGateway([:]) { $0.networkKey = network }
        let now = Date().timeIntervalSince1970
        // Another gateway of the network, alive by its heartbeat, whose nodes serve a model; no link to it is up (it
        // was just killed, or its link is still being dialed).
        let peer = GatewayRecord(
            id: IdentityKey.generate().nodeID.rawValue,
            network: network.nodeID.rawValue,
            mesh: "127.0.0.1:9",
            models: ["elsewhere:q4_0"],
            nodes: 1,
            heartbeatAt: now,
            startedAt: now
        )
        try await gateway.database.heartbeat(peer)
        // The same row in another network is nobody's business here.
        var stranger = peer
        stranger.id = IdentityKey.generate().nodeID.rawValue
        stranger.network = IdentityKey.generate().nodeID.rawValue
        stranger.models = ["foreign:q4_0"]
        try await gateway.database.heartbeat(stranger)
        try await gateway.application.test(.router) { client in
            func chat(_ model: String, path: String = "/v1/chat/completions") async throws -> (HTTPResponse.Status, HTTPFields, JSONValue) {
                let body: JSONValue = ["model": .string(model), "messages": [["role": "user", "content": "hi"]]]
                return try await client.execute(uri: path, method: .post, headers: [.contentType: "application/json"], body: try json(body)) {
                    ($0.status, $0.headers, decode($0.body))
                }
            }
            let (status, headers, body) = try await chat("elsewhere:q4_0")
            #expect(status == .serviceUnavailable, "\(body)")
            #expect(body["error"]?["code"]?.stringValue == "model_not_ready")
            #expect(headers[.retryAfter] == "5")
            // Ollama's routes get Ollama's envelope.
            let (ollamaStatus, _, ollamaBody) = try await chat("elsewhere:q4_0", path: "/api/chat")
            #expect(ollamaStatus == .serviceUnavailable && ollamaBody["error"]?.stringValue?.contains("cannot be reached") == true, "\(ollamaBody)")
            // A model no live gateway of this network serves is unknown, as before.
            let (unknown, _, unknownBody) = try await chat("foreign:q4_0")
            #expect(unknown == .notFound && unknownBody["error"]?["code"]?.stringValue == "model_not_found", "\(unknownBody)")
            // Nor is a gateway whose heartbeat stopped longer ago than the directory's TTL.
            var gone = peer
            gone.heartbeatAt = now - 3600
            try await gateway.database.heartbeat(gone)
            let (expired, _, _) = try await chat("elsewhere:q4_0")
            #expect(expired == .notFound)
        }
    }

    @Test func forwardsGoFirstToThePeerWithFewestOpenForwardsPerNode() {
        let load = PeerLoad()
        func row(_ id: String, nodes: Int) -> GatewayRecord {
            GatewayRecord(id: id, network: "n", mesh: "m", models: ["x"], nodes: nodes, heartbeatAt: 0, startedAt: 0)
        }
        let rows = [row("old", nodes: 1), row("big", nodes: 4), row("new", nodes: 1)]
        #expect(load.leastLoadedFirst(rows).map(\.id) == ["old", "big", "new"], "idle peers keep the directory's order")
        var tickets = [load.started("old")]
        #expect(load.leastLoadedFirst(rows).map(\.id) == ["big", "new", "old"])
        // Per node: three open on a peer of four nodes weigh less than one on a peer of one.
        tickets += (0..<3).map { _ in load.started("big") }
        #expect(load.leastLoadedFirst(rows).map(\.id) == ["new", "big", "old"])
        #expect(load.open(to: "big") == 3)
        tickets.removeAll()
        #expect(load.open(to: "big") == 0 && load.open(to: "old") == 0, "a finished forward stops counting")
        #expect(load.leastLoadedFirst(rows).map(\.id) == ["old", "big", "new"])
    }
}
