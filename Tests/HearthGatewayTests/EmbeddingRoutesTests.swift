import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// `/v1/embeddings`, `/api/embed` and `/api/embeddings` against a named fake node that answers like llama-server
/// started with `--embeddings` (the real engine is in HearthIntegrationTests' EmbeddingsTests).
struct EmbeddingRoutesTests {
    static let answer =
        #"{"model":"tiny:q8_0","object":"list","usage":{"prompt_tokens":6,"total_tokens":6},"data":[{"index":0,"object":"embedding","embedding":[0.6,0.8]},{"index":1,"object":"embedding","embedding":[1.0,0.0]}]}"#

    /// nodeA serves the model with embeddings, nodeB the same model without.
    func gateway() async throws -> (Gateway, FakeNodeTransport) {
        let (gateway, transport) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "application/json", chunks: [Self.answer]),
            nodeB: .respond(status: 200, contentType: "application/json", chunks: [#"{"should":"not be asked"}"#]),
        ])
        var embedding = announcement(nodeA)
        embedding.report.models[0].embeddings = true
        announce(gateway, embedding)
        announce(gateway, announcement(nodeB))
        return (gateway, transport)
    }

    @Test func routesOnlyToEnginesServingEmbeddingsAndMetersTheirPrompt() async throws {
        let (gateway, transport) = try await gateway()
        try await gateway.application.test(.router) { client in
            for _ in 0..<4 {
                try await client.execute(
                    uri: "/v1/embeddings",
                    method: .post,
                    body: try json(["model": .string(testModel.rawValue), "input": ["a", "b"]])
                ) { response in
                    #expect(response.status == .ok)
                    #expect(decode(response.body)["data"]?[1]?["embedding"] == [1, 0])
                }
            }
            #expect(transport.requests.allSatisfy { $0.node == nodeA }, "an engine without embeddings was asked")
            #expect(transport.requests.first?.body == ["model": .string(testModel.rawValue), "input": ["a", "b"]])
            let usage = try await eventually("the four are metered") {
                let rows = try await gateway.database.recentUsage()
                return rows.count == 4 ? rows : nil
            }
            #expect(usage.allSatisfy { $0.route == "/v1/embeddings" && $0.promptTokens == 6 && $0.completionTokens == 0 && $0.status == "ok" })
        }
    }

    @Test func ollamaShapesComeBackAsOllamaSendsThem() async throws {
        let (gateway, transport) = try await gateway()
        try await gateway.application.test(.router) { client in
            try await client.execute(
                uri: "/api/embed",
                method: .post,
                body: try json(["model": .string(testModel.rawValue), "input": ["a", "b"], "keep_alive": "5m"])
            ) { response in
                #expect(response.status == .ok)
                let body = decode(response.body)
                #expect(body["embeddings"] == [[0.6, 0.8], [1, 0]])
                #expect(body["model"]?.stringValue == testModel.rawValue)
                #expect(body["prompt_eval_count"] == 6)
            }
            try await client.execute(
                uri: "/api/embeddings",
                method: .post,
                body: try json(["model": .string(testModel.rawValue), "prompt": "a"])
            ) { response in
                #expect(response.status == .ok)
                #expect(decode(response.body) == ["embedding": [0.6, 0.8]])
            }
            #expect(
                transport.requests.map(\.body) == [
                    ["model": .string(testModel.rawValue), "input": ["a", "b"]], ["model": .string(testModel.rawValue), "input": "a"],
                ]
            )
            // Ollama's error shape on Ollama's routes.
            try await client.execute(uri: "/api/embed", method: .post, body: try json(["model": .string(testModel.rawValue), "input": 5])) {
                response in
                #expect(response.status == .badRequest)
                #expect(decode(response.body)["error"]?.stringValue?.contains("input") == true)
            }
            // Ollama's `dimensions`: the vectors cut and made unit length again ([0.6, 0.8] → [1]; [1, 0] → [1]).
            try await client.execute(
                uri: "/api/embed",
                method: .post,
                body: try json(["model": .string(testModel.rawValue), "input": ["a", "b"], "dimensions": 1])
            ) { response in
                #expect(response.status == .ok)
                let vectors = decode(response.body)["embeddings"]?.arrayValue?.map { $0.arrayValue?.compactMap(\.doubleValue) ?? [] }
                #expect(vectors == [[1.0], [1.0]])
            }
            #expect(transport.requests.last?.body == ["model": .string(testModel.rawValue), "input": ["a", "b"]], "dimensions went to the node")
        }
    }

    /// Ollama answers a request with nothing to embed by loading the model: no vectors, and no node asked. A model no
    /// node embeds with is refused as a request with input would be.
    @Test func anOllamaRequestWithNothingToEmbedOnlySaysTheModelIsThere() async throws {
        let (gateway, transport) = try await gateway()
        try await gateway.application.test(.router) { client in
            let model = JSONValue.string(testModel.rawValue)
            let empty: [(String, JSONValue, JSONValue)] = [
                ("/api/embed", ["model": model], ["model": model, "embeddings": []]),
                ("/api/embed", ["model": model, "input": ""], ["model": model, "embeddings": []]),
                ("/api/embed", ["model": model, "input": []], ["model": model, "embeddings": []]),
                ("/api/embeddings", ["model": model], ["embedding": []]),
                ("/api/embeddings", ["model": model, "prompt": ""], ["embedding": []]),
            ]
            for (uri, body, expected) in empty {
                try await client.execute(uri: uri, method: .post, body: try json(body)) { response in
                    #expect(response.status == .ok, "\(uri) \(body)")
                    #expect(decode(response.body) == expected, "\(uri) \(body)")
                }
            }
            #expect(transport.requests.isEmpty, "a node was asked to embed nothing")
            for uri in ["/api/embed", "/api/embeddings"] {
                try await client.execute(uri: uri, method: .post, body: try json(["model": "nobody-serves:q8_0"])) { response in
                    #expect(response.status == .notFound)
                    #expect(decode(response.body)["error"]?.stringValue?.contains("nobody-serves") == true)
                }
            }
            // An empty text in a list is still something asked for: refused, as Ollama's engine refuses it.
            try await client.execute(uri: "/api/embed", method: .post, body: try json(["model": model, "input": [""]])) {
                #expect($0.status == .badRequest)
            }
        }
    }

    @Test func aModelServedOnlyForCompletionsIsNotFoundForEmbeddings() async throws {
        let (gateway, transport) = try await makeGateway([nodeB: .respond(status: 200, contentType: "application/json", chunks: ["{}"])])
        announce(gateway, announcement(nodeB))
        try await gateway.application.test(.router) { client in
            try await client.execute(
                uri: "/v1/embeddings",
                method: .post,
                body: try json(["model": .string(testModel.rawValue), "input": "a"])
            ) { response in
                #expect(response.status == .notFound)
                let error = decode(response.body)["error"]
                #expect(error?["code"] == "model_not_found")
                #expect(error?["message"]?.stringValue?.contains("--embeddings") == true)
            }
            for bad: JSONValue in [["model": .string(testModel.rawValue)], ["model": .string(testModel.rawValue), "input": "a", "dimensions": 8]] {
                try await client.execute(uri: "/v1/embeddings", method: .post, body: try json(bad)) { #expect($0.status == .badRequest) }
            }
            #expect(transport.requests.isEmpty)
        }
    }
}
