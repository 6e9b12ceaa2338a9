import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

struct CatalogRoutesTests {
    static func withMemory(_ node: NodeID, gib: UInt64) -> NodeAnnouncement {
        var node = announcement(node)
        node.limits.memoryBytes = gib << 30
        return node
    }

    @Test func listsTheCatalogWithRunnabilityAndTheAllowlist() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            announce(gateway, Self.withMemory(nodeA, gib: 6))
            announce(gateway, Self.withMemory(nodeB, gib: 4))
            try await client.execute(uri: "/api/catalog", method: .get) { response in
                #expect(response.status == .ok)
                let body = decode(response.body)
                #expect(body["context"] == 4096)
                let entries = body["data"]?.arrayValue ?? []
                #expect(entries.count == Catalog.builtin.entries.count)
                let smol = entries.first { $0["id"]?.stringValue == DefaultModel.id.rawValue }
                #expect(smol?["sha256"]?.stringValue == DefaultModel.sha256.hex)
                #expect(smol?["pinned"] == true)
                #expect(smol?["runnability"]?["status"] == "singleNode")
                #expect(smol?["runnability"]?["nodes"]?.arrayValue?.count == 2)
                let estimate = smol?["runnability"]?["estimate"]
                let parts = ["weightsBytes", "kvCacheBytes", "computeBytes", "runtimeBytes"].compactMap { estimate?[$0]?.integerValue }
                #expect(parts.count == 4 && estimate?["totalBytes"]?.integerValue == parts.reduce(0, +))
                // 8 GB of Q8_0 weights: neither node alone, both together.
                let qwen = entries.first { $0["id"]?.stringValue == "qwen2.5-7b-instruct:q8_0" }
                #expect(qwen?["pinned"] == false)
                #expect(qwen?["runnability"]?["status"] == "pool")
                #expect(qwen?["runnability"]?["pool"]?.arrayValue?.map(\.stringValue) == [nodeA.rawValue, nodeB.rawValue])
                // The 70B model stays visible, with what it would take.
                let large = entries.first { $0["id"]?.stringValue == "llama-3.3-70b-instruct:q4_k_m" }
                #expect(large?["runnability"]?["status"] == "needsMoreNodes")
                #expect(large?["runnability"]?["summary"]?.stringValue?.hasPrefix("needs ") == true)
            }
            try await client.execute(uri: "/api/catalog/allowlist", method: .get) { response in
                let pins = decode(response.body)["data"]?.arrayValue ?? []
                #expect(pins == [["id": .string(DefaultModel.id.rawValue), "sha256": .string(DefaultModel.sha256.hex)]])
            }
        }
    }

    @Test func capacityFollowsTheRequestedContextAndRefusesBadParameters() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            announce(gateway, Self.withMemory(nodeA, gib: 1))
            func status(of model: String, context: Int) async throws -> String? {
                try await client.execute(uri: "/api/capacity?context=\(context)", method: .get) { response in
                    decode(response.body)["data"]?.arrayValue?.first { $0["model"]?.stringValue == model }?["status"]?.stringValue
                }
            }
            // Qwen2.5 0.5B: 676 MB of weights; its KV cache grows by 12 KiB a token.
            #expect(try await status(of: "qwen2.5-0.5b-instruct:q8_0", context: 2048) == "singleNode")
            #expect(try await status(of: "qwen2.5-0.5b-instruct:q8_0", context: 131_072) == "needsMoreNodes")
            // Without `?context=`, the answer is for the context this gateway plans pools with.
            let unsized = try await client.execute(uri: "/api/capacity", method: .get) { decode($0.body)["context"] }
            #expect(unsized == 4096)
            for bad in ["context=0", "context=abc", "parallel=1000", "context=-5"] {
                try await client.execute(uri: "/api/capacity?\(bad)", method: .get) { response in
                    #expect(response.status == .badRequest, "\(bad)")
                    #expect(decode(response.body)["error"]?["type"] == "invalid_request_error")
                }
            }
        }
    }

    @Test func theDefaultContextIsTheOnePoolsArePlannedWith() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.pools.context = 8192 }
        try await gateway.application.test(.router) { client in
            announce(gateway, Self.withMemory(nodeA, gib: 1))
            for path in ["/api/capacity", "/api/catalog"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(decode(response.body)["context"] == 8192, "\(path)")
                }
            }
        }
    }

    @Test func anOperatorCatalogReplacesWhatIsListed() async throws {
        let entry = pinnedEntry("house:q8_0", family: "house")
        let (gateway, _) = try await makeGateway([:]) { $0.catalog = try! Catalog(entries: [entry]) }
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/api/catalog/allowlist", method: .get) { response in
                #expect(decode(response.body)["data"]?.arrayValue?.map { $0["id"]?.stringValue } == ["house:q8_0"])
            }
        }
    }

    @Test func requestsNameTheCatalogsHashAndABaseNameRoutesToThePinnedFile() async throws {
        let answer = FakeNodeTransport.Behaviour.respond(status: 200, contentType: "application/json", chunks: [#"{"choices":[]}"#])
        let (gateway, transport) = try await makeGateway([nodeA: answer])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, model: DefaultModel.id))
            for name in [DefaultModel.id.rawValue, "smollm2-135m-instruct"] {
                let body: JSONValue = ["model": .string(name), "messages": [["role": "user", "content": "hi"]]]
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                    #expect(response.status == .ok, "\(name)")
                }
            }
            #expect(transport.requests.map { $0.body["model"]?.stringValue } == [DefaultModel.id.rawValue, DefaultModel.id.rawValue])
            #expect(transport.modelHashes == [DefaultModel.sha256, DefaultModel.sha256])
        }
    }
}
