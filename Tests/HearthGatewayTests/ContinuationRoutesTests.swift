import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Streams whose node breaks, continued on another (FAKE node transport; real engines: ContinuationTests in
/// HearthIntegrationTests).
struct ContinuationRoutesTests {
    /// The rest of the answer as the continuing node sends it: marked pieces, a finish chunk, its usage, `[DONE]`.
    static func rest(_ pieces: [(text: String, token: Int32)], prompt: Int, completion: Int) -> [String] {
        FakeNodeTransport.markedChatEvents(pieces, first: false) + [
            #"data: {"id":"chatcmpl-1","created":42,"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk"}"#
                + "\n\n",
            #"data: {"id":"chatcmpl-1","created":42,"choices":[],"usage":{"prompt_tokens":\#(prompt),"completion_tokens":\#(completion),"total_tokens":\#(prompt + completion)}}"#
                + "\n\n",
            "data: [DONE]\n\n",
        ]
    }

    static let brokenStream = FakeNodeTransport.Behaviour.breakAfter(
        chunks: FakeNodeTransport.markedChatEvents([("Once", 10), (" upon", 11), (" a", 12)], first: true)
    )

    func streamingChat(usage: Bool = true) -> JSONValue {
        var body = chatBody
        body["stream"] = true
        if usage { body["stream_options"] = ["include_usage": true] }
        return body
    }

    @Test func aBrokenStreamGoesOnFromAnotherNodeWithTheTokensSoFar() async throws {
        let (gateway, transport) = try await makeGateway([
            nodeA: Self.brokenStream,
            // The engine's usage counts the three prefilled tokens as prompt: 7 + 3.
            nodeB: .continuation(chunks: Self.rest([(" time", 13), (".", 14)], prompt: 10, completion: 2), prefill: 3),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat())) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(HTTP.streamedText(text) == "Once upon a time.")
                #expect(!text.contains("hearth-token"), "the node's marks stay between node and gateway")
                #expect(!text.contains("error"))
                #expect(text.components(separatedBy: "\"role\"").count == 2, "one role chunk")
                #expect(text.hasSuffix("data: [DONE]\n\n"))
                let events = HTTP.events(text)
                #expect(events.allSatisfy { $0["id"] == "chatcmpl-1" && $0["created"] == 42 })
                let usage = events.last?["usage"]
                #expect(usage?["prompt_tokens"] == 7)
                #expect(usage?["completion_tokens"] == 5)
                #expect(usage?["total_tokens"] == 12)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(String(buffer: response.body).contains("hearth_stream_continuations_total 1"))
            }
        }
        let requests = transport.requests
        #expect(requests.map(\.node) == [nodeA, nodeB])
        #expect(requests[0].body[Continuation.field] == nil)
        let continuation = try #require(ContinuationRequest(requests[1].body[Continuation.field]))
        #expect(continuation == ContinuationRequest(generated: [10, 11, 12], id: "chatcmpl-1", created: 42))
        #expect(requests[1].body["messages"] == requests[0].body["messages"])
        #expect(requests[1].body["max_tokens"] == requests[0].body["max_tokens"])

        // Each part is metered on its own; together they charge what the client's usage says.
        await gateway.settled()
        let rows = try await gateway.database.recentUsage().sorted { $0.requestID < $1.requestID }
        #expect(rows.count == 2)
        #expect(rows[0].nodeID == nodeA.rawValue && rows[0].status == "upstream_error")
        #expect(rows[1].nodeID == nodeB.rawValue && rows[1].status == "ok" && rows[1].requestID == rows[0].requestID + ".1")
        #expect(rows.map(\.promptTokens).reduce(0, +) == 7)
        #expect(rows.map(\.completionTokens).reduce(0, +) == 5)
    }

    /// A gateway whose node A breaks after "Once upon a" (three tokens) and whose node B would go on; `ask` sends one
    /// request, then the nodes asked and the usage rows are returned. One gateway per request: a broken stream lowers
    /// A's score, and the next request would go to B.
    func afterABreak(_ ask: @Sendable (any TestClientProtocol) async throws -> Void) async throws -> ([NodeID], [UsageRecord]) {
        let (gateway, transport) = try await makeGateway([
            nodeA: Self.brokenStream,
            nodeB: .continuation(chunks: Self.rest([(" time", 13)], prompt: 10, completion: 1), prefill: 3),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            try await ask(client)
        }
        await gateway.settled()
        return (transport.requests.map(\.node), try await gateway.database.recentUsage())
    }

    @Test(arguments: [true, false])
    func aStreamCutAfterItsLastAllowedTokenIsEndedByTheGatewayNotContinued(usage: Bool) async throws {
        // Three tokens are all that max_tokens allows: another node asked to go on would make one token more than the
        // client allowed (an engine makes at least one).
        var asking = streamingChat(usage: usage)
        asking["max_tokens"] = 3
        let body = asking
        let (asked, rows) = try await afterABreak { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                let text = String(buffer: response.body)
                #expect(HTTP.streamedText(text) == "Once upon a")
                #expect(!text.contains("error"))
                #expect(text.hasSuffix("data: [DONE]\n\n"))
                let events = HTTP.events(text)
                #expect(events.allSatisfy { $0["id"] == "chatcmpl-1" && $0["created"] == 42 && $0["object"] == "chat.completion.chunk" })
                #expect(events.compactMap { $0["choices"]?[0]?["finish_reason"]?.stringValue } == ["length"])
                #expect(events.contains { $0["usage"] != nil } == usage, "usage only for a client that asked")
                if usage { #expect(events.last?["usage"]?["completion_tokens"] == 3) }
            }
        }
        #expect(asked == [nodeA], "no node is asked to go on past max_tokens")
        #expect(rows.count == 1 && rows.allSatisfy { $0.status == "upstream_error" && $0.completionTokens == 3 })
    }

    @Test func anOllamaStreamCutAfterItsLastAllowedTokenEndsWithItsCounters() async throws {
        let body: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]], "options": ["num_predict": 3]]
        let (asked, _) = try await afterABreak { client in
            try await client.execute(uri: "/api/chat", method: .post, body: try json(body)) { response in
                let lines = String(buffer: response.body).split(separator: "\n").map { decode(ByteBuffer(string: String($0))) }
                #expect(lines.compactMap { $0["message"]?["content"]?.stringValue }.joined() == "Once upon a")
                #expect(lines.last?["done"] == true)
                #expect(lines.last?["done_reason"] == "length")
                #expect(lines.last?["eval_count"] == 3)
            }
        }
        #expect(asked == [nodeA])
    }

    @Test func aStreamItsDrainingNodeHandsOverGoesOnElsewhere() async throws {
        let (gateway, transport) = try await makeGateway([
            nodeA: .handOver(chunks: FakeNodeTransport.markedChatEvents([("Once", 10), (" upon", 11), (" a", 12)], first: true)),
            nodeB: .continuation(chunks: Self.rest([(" time", 13), (".", 14)], prompt: 10, completion: 2), prefill: 3),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat())) { response in
                let text = String(buffer: response.body)
                #expect(HTTP.streamedText(text) == "Once upon a time.")
                #expect(!text.contains("error"))
            }
        }
        #expect(transport.requests.map(\.node) == [nodeA, nodeB])
        await gateway.settled()
        let statuses = try await gateway.database.recentUsage().sorted { $0.requestID < $1.requestID }.map(\.status)
        #expect(statuses == ["handed_over", "ok"])
    }

    /// A node's stream that ends, receipt and all, before its engine's finish: its engine broke off (it died, or the
    /// owner's server went away) while the node lived on. It is continued like a broken stream, and where nobody can
    /// continue it the client is told, as for a break, never shown a clean end of a cut answer.
    @Test func aStreamThatEndsBeforeItsFinishIsContinuedOrEndsWithTheError() async throws {
        let endsEarly = FakeNodeTransport.Behaviour.respond(
            status: 200,
            contentType: "text/event-stream",
            chunks: FakeNodeTransport.markedChatEvents([("Once", 10)], first: true)
        )
        let continues = FakeNodeTransport.Behaviour.continuation(chunks: Self.rest([(" time", 13)], prompt: 10, completion: 1), prefill: 1)
        for withSecondNode in [true, false] {
            // No spot checks: a whole answer of B's (the Ollama request, when A's score sends it to B at once) would be
            // checked on A, a request more on A whenever the check comes before the count.
            let (gateway, transport) = try await makeGateway([nodeA: endsEarly, nodeB: continues]) {
                $0.spotChecks.share = 0
                $0.spotChecks.firstAnswers = 0
            }
            try await gateway.application.test(.router) { client in
                announce(gateway, announcement(nodeA, slots: 4))
                if withSecondNode { announce(gateway, announcement(nodeB, slots: 1)) }
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat())) { response in
                    let text = String(buffer: response.body)
                    #expect(HTTP.streamedText(text) == (withSecondNode ? "Once time" : "Once"))
                    #expect(text.contains("upstream_failed") == !withSecondNode, "\(text)")
                    #expect(text.hasSuffix("data: [DONE]\n\n") == withSecondNode, "\(text)")
                }
                let ollama: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]]]
                try await client.execute(uri: "/api/chat", method: .post, body: try json(ollama)) { response in
                    let last = String(buffer: response.body).split(separator: "\n").last.map { decode(ByteBuffer(string: String($0))) }
                    if withSecondNode {
                        #expect(last?["done"] == true)
                    } else {
                        // Ollama ends a stream that failed with an error line.
                        #expect(last?["error"]?.stringValue?.isEmpty == false, "\(String(describing: last))")
                    }
                }
            }
            // Each part on A ended early and was metered so; B answered the rest (A's score may send the second
            // request to B at once).
            let nodes = transport.requests.map(\.node)
            #expect(nodes.first == nodeA && nodes.filter { $0 == nodeB }.count == (withSecondNode ? 2 : 0), "\(nodes)")
            await gateway.settled()
            let statuses = try await gateway.database.recentUsage().map(\.status)
            #expect(statuses.filter { $0 == "upstream_error" }.count == nodes.filter { $0 == nodeA }.count, "\(statuses)")
            #expect(statuses.filter { $0 == "ok" }.count == (withSecondNode ? 2 : 0), "\(statuses)")
        }
    }

    @Test func theOllamaStreamIsContinuedToo() async throws {
        let (gateway, _) = try await makeGateway([
            nodeA: Self.brokenStream,
            nodeB: .continuation(chunks: Self.rest([(" time", 13)], prompt: 10, completion: 1), prefill: 3),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            let body: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]]]
            try await client.execute(uri: "/api/chat", method: .post, body: try json(body)) { response in
                let lines = String(buffer: response.body).split(separator: "\n").map { decode(ByteBuffer(string: String($0))) }
                let text = lines.compactMap { $0["message"]?["content"]?.stringValue }.joined()
                #expect(text == "Once upon a time")
                #expect(lines.last?["done"] == true)
                #expect(lines.last?["prompt_eval_count"] == 7)
                #expect(lines.last?["eval_count"] == 4)
            }
        }
    }

    @Test func aNodeThatStartsOverInsteadOfContinuingIsNotSpliced() async throws {
        let (gateway, transport) = try await makeGateway([
            nodeA: Self.brokenStream,
            // No prefill header: a node that ignored the continuation and would repeat the answer from its start.
            nodeB: .continuation(chunks: FakeNodeTransport.chatStream(["Once", " upon"]), prefill: nil),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat())) { response in
                let text = String(buffer: response.body)
                #expect(HTTP.streamedText(text) == "Once upon a")
                #expect(text.contains("upstream_failed"))
            }
        }
        #expect(transport.requests.count == 2)
        await gateway.settled()
        let statuses = try await gateway.database.recentUsage().map(\.status).sorted()
        #expect(statuses == ["upstream_error", "upstream_error"])
    }

    @Test func noContinuationOnANodeWithAnotherFileOrWhenTurnedOff() async throws {
        var other = announcement(nodeB, slots: 1)
        other.report.models[0].sha256 = SHA256Digest(hex: String(repeating: "1", count: 64))!
        for (announced, limit) in [(other, 2), (announcement(nodeB, slots: 1), 0)] {
            let (gateway, transport) = try await makeGateway(
                [nodeA: Self.brokenStream, nodeB: .continuation(chunks: Self.rest([(" time", 13)], prompt: 10, completion: 1), prefill: 3)],
                configure: { $0.maxContinuations = limit }
            )
            try await gateway.application.test(.router) { client in
                announce(gateway, announcement(nodeA, slots: 4))
                announce(gateway, announced)
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat())) { response in
                    let text = String(buffer: response.body)
                    #expect(HTTP.streamedText(text) == "Once upon a")
                    #expect(text.contains("upstream_failed"))
                }
            }
            #expect(transport.requests.map(\.node) == [nodeA])
        }
    }

    @Test func aWholeAnswerWhoseNodeBreaksIsAskedOfAnotherNode() async throws {
        let answer =
            #"{"id":"chatcmpl-2","choices":[{"index":0,"message":{"role":"assistant","content":"Once upon a time."}}],"usage":{"prompt_tokens":7,"completion_tokens":5}}"#
        let (gateway, transport) = try await makeGateway([
            nodeA: .breakAfter(chunks: [#"{"id":"chatcmpl-1","choices":[{"#]),
            nodeB: .respond(status: 200, contentType: "application/json", chunks: [answer]),
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[HTTPField.Name("X-Hearth-Node")!] == nodeB.short)
                #expect(decode(response.body)["choices"]?[0]?["message"]?["content"] == "Once upon a time.")
            }
        }
        #expect(transport.requests.map(\.node) == [nodeA, nodeB])
        #expect(transport.requests[1].body[Continuation.field] == nil, "a whole answer is asked again, not continued")
        await gateway.settled()
        let rows = try await gateway.database.recentUsage().sorted { $0.requestID < $1.requestID }
        #expect(rows.map(\.status) == ["upstream_error", "ok"])
        #expect(rows[1].requestID == rows[0].requestID + ".1" && rows[1].completionTokens == 5)
    }

    @Test func aClientCannotSmuggleAContinuationToANode() async throws {
        let (gateway, transport) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: FakeNodeTransport.chatStream(["x"]))
        ])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            var body = streamingChat()
            body[Continuation.field] = ContinuationRequest(generated: [1, 2], id: "forged", created: 1).json
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .ok)
            }
        }
        #expect(transport.requests.count == 1)
        #expect(transport.requests.first?.body[Continuation.field] == nil)
    }
}
