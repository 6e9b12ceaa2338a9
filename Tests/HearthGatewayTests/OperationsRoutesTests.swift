import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

struct OperationsRoutesTests {
    @Test func listsOnlyModelsWithAReadyNodeAndReportsReadiness() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
            }
            announce(gateway, announcement(nodeA, state: .loading))
            announce(gateway, announcement(nodeB, state: .ready, model: ModelID("other:q8_0")!))
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(decode(response.body)["data"]?.arrayValue?.map { $0["id"]?.stringValue } == ["other:q8_0"])
            }
            try await client.execute(uri: "/api/tags", method: .get) { response in
                #expect(decode(response.body)["models"]?[0]?["name"] == "other:q8_0")
            }
            // Ollama's running models: Open WebUI shows a model as loaded only with `expires_at` and `size_vram`.
            try await client.execute(uri: "/api/ps", method: .get) { response in
                let models = decode(response.body)["models"]?.arrayValue ?? []
                #expect(models.count == 1)
                #expect(models.first?["name"] == "other:q8_0")
                let expires = models.first?["expires_at"]?.stringValue.flatMap { try? Date($0, strategy: .iso8601) }
                #expect(expires.map { $0 > Date().addingTimeInterval(365 * 86400) } == true)
                #expect(models.first?["size_vram"]?.integerValue == 0)
                #expect(models.first?["context_length"]?.integerValue == 512)
            }
            try await client.execute(uri: "/readyz", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                let text = String(buffer: response.body)
                #expect(text.contains(#"hearth_http_requests_total{route="/v1/models",status="200"} 1"#))
                #expect(text.contains("hearth_nodes_online 2"))
                #expect(text.contains("hearth_nodes_ready 1"))
            }
        }
    }

    @Test func rateLimitsEachClientWithHeadersAnd429() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.rateLimitPerMinute = 2 }
        try await gateway.application.test(.router) { client in
            for remaining in ["1", "0"] {
                try await client.execute(uri: "/v1/models", method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Limit")!] == "2")
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Remaining")!] == remaining)
                }
            }
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .tooManyRequests)
                #expect(Int(response.headers[.retryAfter] ?? "") ?? 0 >= 1)
                #expect(decode(response.body)["error"]?["type"] == "rate_limit_error")
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok, "operations routes are not rate limited")
            }
        }
    }

    @Test func ollamaChatStreamsNDJSONAndAnswersOnceWithoutStreaming() async throws {
        let (gateway, _) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: FakeNodeTransport.chatStream(["a", "b"], promptTokens: 5))
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            let body: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]]]
            try await client.execute(uri: "/api/chat", method: .post, body: try json(body)) { response in
                #expect(response.headers[.contentType] == "application/x-ndjson")
                let lines = String(buffer: response.body).split(separator: "\n").map { decode(ByteBuffer(string: String($0))) }
                #expect(lines.map { $0["message"]?["content"]?.stringValue } == ["a", "b", ""])
                #expect(lines.last?["done"] == true)
                #expect(lines.last?["eval_count"] == 2)
                #expect(lines.last?["prompt_eval_count"] == 5)
            }
            var once = body
            once["stream"] = false
            try await client.execute(uri: "/api/chat", method: .post, body: try json(once)) { response in
                let line = decode(response.body)
                #expect(line["message"]?["content"] == "ab")
                #expect(line["done"] == true)
            }
        }
    }

    /// A model's tool call, streamed by the node in OpenAI's pieces, reaches an Ollama client whole, streamed or not.
    @Test func ollamaChatGivesToolCallsWhole() async throws {
        let events = [
            #"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}"# + "\n\n",
            #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"x","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}}],"object":"chat.completion.chunk"}"#
                + "\n\n",
            #"data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}],"object":"chat.completion.chunk"}"#
                + "\n\n",
            #"data: {"choices":[{"index":0,"finish_reason":"tool_calls","delta":{}}],"object":"chat.completion.chunk"}"# + "\n\n",
            "data: [DONE]\n\n",
        ]
        let (gateway, transport) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: events)])
        let call: JSONValue = ["function": ["name": "get_weather", "arguments": ["city": "Paris"]]]
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            let tools: JSONValue = [["type": "function", "function": ["name": "get_weather", "parameters": ["type": "object"]]]]
            var body: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "weather?"]], "tools": tools]
            try await client.execute(uri: "/api/chat", method: .post, body: try json(body)) { response in
                let lines = String(buffer: response.body).split(separator: "\n").map { decode(ByteBuffer(string: String($0))) }
                #expect(lines.compactMap { $0["message"]?["tool_calls"] } == [[call]], "\(lines)")
                #expect(lines.last?["done"] == true && lines.last?["done_reason"] == "stop")
            }
            body["stream"] = false
            try await client.execute(uri: "/api/chat", method: .post, body: try json(body)) { response in
                #expect(decode(response.body)["message"]?["tool_calls"] == [call], "\(String(buffer: response.body))")
            }
        }
        #expect(transport.requests.first?.body["tools"]?[0]?["function"]?["name"] == "get_weather")
    }

    /// Ollama's `raw` prompt skips the model's template: it is continued as it is, as a text completion.
    @Test func ollamaGenerateSendsARawPromptAsATextCompletion() async throws {
        let events = [
            #"data: {"choices":[{"text":" 4,","index":0,"finish_reason":null}],"object":"text_completion"}"# + "\n\n",
            #"data: {"choices":[{"text":" 5","index":0,"finish_reason":"length"}],"object":"text_completion"}"# + "\n\n",
            "data: [DONE]\n\n",
        ]
        let (gateway, transport) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: events)])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            let generate: JSONValue = ["model": .string(testModel.rawValue), "prompt": "Count: 1, 2, 3,", "system": "ignored", "stream": false]
            for raw in [true, false] {
                var body = generate
                body["raw"] = .bool(raw)
                try await client.execute(uri: "/api/generate", method: .post, body: try json(body)) { response in
                    #expect(response.status == .ok)
                    if raw { #expect(decode(response.body)["response"] == " 4, 5", "\(String(buffer: response.body))") }
                }
            }
            try await client.execute(uri: "/api/generate", method: .post, body: try json(["model": "m", "prompt": "x", "raw": "yes"])) { response in
                #expect(response.status == .badRequest)
            }
        }
        #expect(transport.endpoints == [.text, .chat])
        #expect(transport.requests.first?.body["prompt"] == "Count: 1, 2, 3,")
        #expect(transport.requests.first?.body["messages"] == nil, "a raw prompt has no template and no system text")
    }
}

struct ClientAddressTests {
    @Test func believesForwardedForOnlyFromTrustedProxies() {
        #expect(GatewayTestHooks.clientAddress(peer: "10.0.0.9", forwardedFor: ["1.2.3.4"], trusted: []) == "10.0.0.9")
        #expect(GatewayTestHooks.clientAddress(peer: "10.0.0.9", forwardedFor: ["1.2.3.4"], trusted: ["10.0.0.9"]) == "1.2.3.4")
        #expect(
            GatewayTestHooks.clientAddress(peer: "10.0.0.9", forwardedFor: ["6.6.6.6, 1.2.3.4, 10.0.0.8"], trusted: ["10.0.0.9", "10.0.0.8"])
                == "1.2.3.4"
        )
        #expect(GatewayTestHooks.clientAddress(peer: "10.0.0.9", forwardedFor: [], trusted: ["10.0.0.9"]) == "10.0.0.9")
    }

    @Test func splitsServerSentEventsAcrossChunkBoundaries() throws {
        #expect(try GatewayTestHooks.splitEvents(["data: a\n", "\ndata: b\n\nda", "ta: c\n\n"]) == ["data: a\n\n", "data: b\n\n", "data: c\n\n"])
        #expect(try GatewayTestHooks.splitEvents(["data: a\r\n\r\ndata: b"]) == ["data: a\r\n\r\n", "data: b"])
    }
}
