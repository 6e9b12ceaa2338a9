import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

struct CompletionRoutesTests {
    @Test func relaysAStreamUnchangedStripsUnaskedUsageAndMetersRealTokens() async throws {
        let (gateway, _) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: FakeNodeTransport.chatStream(["Hel", "lo"], promptTokens: 9))
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            var body = chatBody
            body["stream"] = true
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/event-stream")
                #expect(response.headers[HTTPField.Name("X-Hearth-Node")!] == nodeA.short)
                #expect(response.headers[HTTPField.Name("X-Request-Id")!] != nil)
                let text = String(buffer: response.body)
                #expect(HTTP.streamedText(text) == "Hello")
                #expect(!text.contains("\"usage\""))
                #expect(text.hasSuffix("data: [DONE]\n\n"))
            }
        }
        await gateway.settled()
        let usage = try await gateway.database.recentUsage()
        #expect(usage.count == 1)
        #expect(usage.first?.promptTokens == 9)
        #expect(usage.first?.completionTokens == 2)
        #expect(usage.first?.status == "ok")
        #expect(usage.first?.nodeID == nodeA.rawValue)
    }

    @Test func keepsTheUsageChunkWhenTheClientAsksForIt() async throws {
        let (gateway, transport) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: FakeNodeTransport.chatStream(["x"]))
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            var body = chatBody
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                let usage = HTTP.events(String(buffer: response.body)).last?["usage"]
                #expect(usage?["completion_tokens"] == 1)
            }
        }
        #expect(transport.requests.first?.body["stream_options"]?["include_usage"] == true)
        #expect(transport.requests.first?.body["max_tokens"] == 64)
    }

    @Test func retriesOnTheNextNodeWhenOneFailsBeforeItsFirstByte() async throws {
        let answer = #"{"choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#
        let (gateway, transport) = try await makeGateway([
            nodeA: .fail, nodeB: .respond(status: 200, contentType: "application/json", chunks: [answer]),
        ])
        try await gateway.application.test(.router) { client in
            // A has more free slots, so it is tried first.
            announce(gateway, announcement(nodeA, slots: 8))
            announce(gateway, announcement(nodeB, slots: 1))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("X-Hearth-Node")!] == nodeB.short)
                #expect(decode(response.body)["choices"]?[0]?["message"]?["content"] == "ok")
            }
        }
        #expect(transport.requests.map(\.node) == [nodeA, nodeB])
    }

    @Test func answers502WhenEveryNodeFailsAnd503WhenNoneIsReadyOrAllFailed() async throws {
        let (gateway, _) = try await makeGateway([nodeA: .fail, nodeB: .respond(status: 500, contentType: "text/plain", chunks: ["boom"])])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            announce(gateway, announcement(nodeB))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .badGateway)
                #expect(decode(response.body)["error"]?["type"] == "upstream_error")
            }
            announce(gateway, announcement(nodeA, state: .loading))
            announce(gateway, announcement(nodeB, state: .failed))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] != nil)
                #expect(decode(response.body)["error"]?["code"] == "model_not_ready")
                #expect(decode(response.body)["error"]?["message"]?.stringValue?.contains("ready yet") == true)
            }
            // Failed on every node that offers it: said so, not "yet", with the same code and Retry-After.
            announce(gateway, announcement(nodeA, state: .failed))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(response.headers[.retryAfter] != nil)
                let error = decode(response.body)["error"]
                #expect(error?["code"] == "model_not_ready")
                #expect(error?["message"]?.stringValue?.contains("reports it failed") == true, "\(String(describing: error))")
            }
        }
        await gateway.settled()
        let statuses = try await gateway.database.recentUsage().map(\.status).sorted()
        #expect(statuses == ["502", "503", "503"])
    }

    /// The client's 502 names each node's error code, and nothing else of its answer: a node's message may name its
    /// owner's server, and a code that is not a word is left out.
    @Test func the502NamesTheNodesErrorCodesOnly() async throws {
        let engineFailed =
            #"{"error":{"message":"The owner's server at 10.1.2.3:8080 refused the connection.","type":"upstream_error","param":null,"#
            + #""code":"engine_failed"}}"#
        let oddCode = #"{"error":{"message":"x","type":"upstream_error","param":null,"code":"see http://10.1.2.3/"}}"#
        let (gateway, _) = try await makeGateway([
            nodeA: .respond(status: 502, contentType: "application/json", chunks: [engineFailed]),
            nodeB: .respond(status: 500, contentType: "application/json", chunks: [oddCode]),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 8))
            announce(gateway, announcement(nodeB, slots: 1))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .badGateway)
                let message = decode(response.body)["error"]?["message"]?.stringValue ?? ""
                #expect(message.contains("\(nodeA.short): HTTP 502 engine_failed"), "\(message)")
                #expect(message.contains("\(nodeB.short): HTTP 500)"), "\(message)")
                #expect(!message.contains("10.1.2.3"), "\(message)")
            }
        }
    }

    @Test func refusesBadRequestsWithTheOpenAIEnvelope() async throws {
        let (gateway, transport) = try await makeGateway([nodeA: .fail])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            let cases: [(ByteBuffer, HTTPResponse.Status, String?)] = [
                (ByteBuffer(string: "{not json"), .badRequest, "invalid_json"),
                (try json(["model": .string(testModel.rawValue), "messages": []]), .badRequest, "empty_array"),
                (try json(["model": "tiny", "messages": [["role": "user", "content": "x"]]]), .notFound, "model_not_found"),
                (try json(["model": .string(testModel.rawValue), "messages": [["role": "user"]], "max_tokens": 65]), .badRequest, "invalid_value"),
                (ByteBuffer(repeating: UInt8(ascii: " "), count: 5000), .contentTooLarge, "request_too_large"),
            ]
            for (body, status, code) in cases {
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: body) { response in
                    #expect(response.status == status)
                    let error = decode(response.body)["error"]
                    #expect(error?["code"]?.stringValue == code)
                    #expect(error?["message"]?.stringValue?.isEmpty == false)
                    #expect(error?["type"]?.stringValue != nil)
                    // Every envelope lists its members in OpenAI's order, whatever the refusal.
                    let members = ["message", "type", "param", "code"].map { String(buffer: response.body).range(of: "\"\($0)\":")?.lowerBound }
                    #expect(members.allSatisfy { $0 != nil } && members == members.sorted { $0! < $1! }, "\(String(buffer: response.body))")
                    #expect(response.headers[HTTPField.Name("X-RateLimit-Limit")!] != nil, "refusals carry rate-limit headers too")
                }
            }
            try await client.execute(uri: "/v1/nope", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(decode(response.body)["error"]?["code"] == "unknown_url")
                let expected = #"{"error":{"message":"No route for /v1/nope.","type":"not_found_error","param":null,"code":"unknown_url"}}"#
                #expect(String(buffer: response.body) == expected)
            }
        }
        #expect(transport.requests.isEmpty, "no bad request may reach a node")
        await gateway.settled()
        let metrics = String(decoding: gateway.metrics.render(), as: UTF8.self)
        #expect(!metrics.contains(#"model="tiny""#), "a client-chosen model name must not become a metric label")
    }

    @Test func relaysANodeRefusalAsAnEnvelopeWithTheNodesMessage() async throws {
        let refusal = #"{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}"#
        let (gateway, _) = try await makeGateway([nodeA: .respond(status: 400, contentType: "application/json", chunks: [refusal])])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .badRequest)
                #expect(decode(response.body)["error"]?["message"] == "the request exceeds the available context size")
            }
        }
    }
}

/// A request the engine refuses is the client's mistake: answered 400 with the engine's reason, tried on no other
/// node, and held against no node.
struct EngineRefusalRoutingTests {
    @Test func aRefusedRequestIsNotRetriedAndCostsTheNodeNothing() async throws {
        let refusal =
            #"{"error":{"message":"Field 'top_k': type must be number","type":"invalid_request_error","param":null,"code":"engine_rejected"}}"#
        let (gateway, transport) = try await makeGateway([
            nodeA: .respond(status: 400, contentType: "application/json", chunks: [refusal]),
            nodeB: .respond(status: 400, contentType: "application/json", chunks: [refusal]),
        ])
        announce(gateway, announcement(nodeA))
        announce(gateway, announcement(nodeB))
        var refused = chatBody
        refused["top_k"] = "many"
        let body = refused
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .badRequest)
                let error = decode(response.body)["error"]
                #expect(error?["code"] == "engine_rejected")
                #expect(error?["message"]?.stringValue?.contains("top_k") == true)
            }
        }
        #expect(transport.requests.count == 1, "a client's mistake was tried on another node")
        #expect(gateway.registry.refusedReceipts().values.allSatisfy { $0 == 0 })
    }
}
