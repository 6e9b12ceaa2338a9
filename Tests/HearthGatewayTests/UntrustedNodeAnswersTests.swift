import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// A node's answer is not taken on trust: what a node (or the owner's server behind it) sends beyond what the client
/// asked for is cut, charged and credited no further, and never takes the gateway down. Found by pointing a node at a
/// hostile owner's server: a stream that ignored `max_tokens` charged an anonymous client 1.77 million tokens (its
/// quota empty for 87 hours), `completion_tokens: -5` crashed the gateway, and an empty 200 was passed on as an
/// answer. FAKE node transport: the node here is the attacker, scripted.
struct UntrustedNodeAnswersTests {
    func streamingChat(maxTokens: Int) -> JSONValue {
        var body = chatBody
        body["stream"] = true
        body["max_tokens"] = .integer(Int64(maxTokens))
        body["stream_options"] = ["include_usage": true]
        return body
    }

    /// A stream that goes on past `max_tokens` (marked as a node marks its events, or bare as a node that strips the
    /// marks would send it) ends there for the client, with the finish and usage an engine would have sent, and the
    /// node is asked to stop.
    @Test(arguments: [true, false])
    func aStreamPastMaxTokensIsCutThereAndChargedNoMore(marked: Bool) async throws {
        let pieces = (0..<200).map { (text: "w\($0) ", token: Int32(100 + $0)) }
        let events =
            marked
            ? FakeNodeTransport.markedChatEvents(pieces, first: true)
            : [FakeNodeTransport.roleEvent] + pieces.map { FakeNodeTransport.chatEvent($0.text) }
        let (gateway, transport) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: events)])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat(maxTokens: 8))) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                let received = HTTP.events(text)
                let content = received.filter { $0["choices"]?[0]?["delta"]?["content"]?.stringValue != nil }
                // Marked, every token is counted; bare, the role and finish events a stream has beside its tokens
                // leave room for one more event (the bound is on events then).
                #expect(marked ? content.count == 8 : content.count <= 9, "\(content.count) pieces")
                #expect(received.contains { $0["choices"]?[0]?["finish_reason"] == "length" })
                #expect(received.last?["usage"]?["completion_tokens"] == 8)
                #expect(text.hasSuffix("data: [DONE]\n\n"))
                #expect(!text.contains("error"))
            }
        }
        await gateway.settled()
        let row = try #require(try await gateway.database.recentUsage().first)
        #expect(row.completionTokens == 8 && row.status == "upstream_error", "\(row)")
        #expect(transport.cancelled == [row.requestID], "the node was asked to stop")
    }

    /// Keep-alive comments (as some servers and proxies send while a prompt is read) are not tokens: a stream with more
    /// of them than `max_tokens` is relayed whole.
    @Test func keepAliveCommentsDoNotCountAsTokens() async throws {
        let pings = Array(repeating: ": PROCESSING\n\n", count: 30)
        let events =
            [FakeNodeTransport.roleEvent] + pings + (0..<8).map { FakeNodeTransport.chatEvent("w\($0) ") } + [
                #"data: {"id":"chatcmpl-1","created":42,"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}"#
                    + "\n\n", "data: [DONE]\n\n",
            ]
        let (gateway, _) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: events)])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat(maxTokens: 8))) { response in
                #expect(HTTP.streamedText(String(buffer: response.body)) == (0..<8).map { "w\($0) " }.joined())
            }
        }
        await gateway.settled()
        let row = try #require(try await gateway.database.recentUsage().first)
        #expect(row.status == "ok" && row.completionTokens == 8, "\(row)")
    }

    /// Events far larger than an engine's (each under the splitter's bound) are cut like tokens past `max_tokens`: a
    /// client that asked for 8 tokens does not download megabytes, and pays for what it saw. Events as large as the
    /// log-probabilities the client asked for make are not.
    @Test func aStreamOfOversizedEventsIsCutAndOneWithTheAskedLogprobsIsNot() async throws {
        let huge = String(repeating: "x", count: 200 << 10)
        let oversized = [FakeNodeTransport.roleEvent] + (0..<5).map { _ in FakeNodeTransport.chatEvent(huge) }
        let (gateway, _) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: oversized)])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat(maxTokens: 8))) { response in
                let text = String(buffer: response.body)
                #expect(text.utf8.count < 4 << 10, "\(text.utf8.count) bytes went to the client")
                #expect(HTTP.events(text).last?["usage"]?["completion_tokens"] == 0)
                #expect(text.hasSuffix("data: [DONE]\n\n"))
            }
        }
        await gateway.settled()
        #expect(try await gateway.database.recentUsage().first?.completionTokens == 0)

        // A hundred alternatives a token, as a client may ask llama-server: 15 KB an event here, all of it relayed.
        let alternative =
            #"{"id":1,"token":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx","bytes":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30],"logprob":-1.5}"#
        let logprobs =
            #"{"content":[{"id":1,"token":"w","bytes":[119],"logprob":-0.5,"top_logprobs":["#
            + Array(repeating: alternative, count: 100).joined(separator: ",") + "]}]}"
        let rich =
            [FakeNodeTransport.roleEvent]
            + (0..<8).map { _ in
                #"data: {"id":"chatcmpl-1","created":42,"choices":[{"index":0,"delta":{"content":"w"},"logprobs":\#(logprobs)}],"object":"chat.completion.chunk"}"#
                    + "\n\n"
            } + [
                #"data: {"id":"chatcmpl-1","created":42,"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}"#
                    + "\n\n", "data: [DONE]\n\n",
            ]
        #expect(rich[1].utf8.count > 8 << 10, "an event above the bound without alternatives")
        let (honest, _) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: rich)])
        var asked = streamingChat(maxTokens: 8)
        asked["logprobs"] = true
        asked["top_logprobs"] = 100
        let body = asked
        try await honest.application.test(.router) { client in
            announce(honest, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                let text = String(buffer: response.body)
                #expect(HTTP.streamedText(text) == String(repeating: "w", count: 8))
                #expect(!text.contains("upstream"), "\(text.suffix(300))")
            }
        }
    }

    /// Counts no engine can make are no report (the gateway lives on to answer the next request); counts beyond what
    /// the request could make are charged only up to it, and the node's receipt claiming them is refused.
    @Test func aNodesImpossibleCountsNeitherCrashTheGatewayNorCharge() async throws {
        let gatewayBox = GatewayIDBox()
        let key = IdentityKey.generate()
        func answer(prompt: String, completion: String) -> [String] {
            [
                #"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":\#(prompt),"completion_tokens":\#(completion)}}"#
            ]
        }
        var asked = chatBody
        asked["max_tokens"] = 16
        let body = asked
        // No count at all: nothing charged but what the gateway counted itself (an answer's tokens are not counted).
        let (impossible, _) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "application/json", chunks: answer(prompt: "1000000000000000", completion: "-5"))
        ])
        try await impossible.application.test(.router) { client in
            announce(impossible, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .ok)
            }
            await impossible.settled()
            // Before, the metering after the answer crashed the process here (a counter's negative step).
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(String(buffer: response.body).contains(#"hearth_tokens_total{model="tiny:q8_0",direction="out"} 0"#))
            }
        }
        let row = try #require(try await impossible.database.recentUsage().first)
        #expect(row.promptTokens == 0 && row.completionTokens == 0, "\(row)")

        // Counts beyond the request: charged up to what it could make; the receipt claiming them is refused.
        let (inflated, _) = try await makeGateway([
            key.nodeID: .respondWithReceipt(
                status: 200,
                contentType: "application/json",
                chunks: answer(prompt: "1000000", completion: "3"),
                receipt: { request in
                    let receipt = ReceiptSettlementTests.receipt(for: request, gateway: gatewayBox.id!, node: key) {
                        $0.promptTokens = 1_000_000
                        $0.maxTokens = 16
                    }
                    return ReceiptSettlementTests.token(receipt, by: key)
                }
            )
        ])
        gatewayBox.id = inflated.id
        try await inflated.application.test(.router) { client in
            announce(inflated, announcement(key.nodeID))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .ok)
            }
        }
        await inflated.settled()
        let charged = try #require(try await inflated.database.recentUsage().first)
        // The bound: the request's bytes as the node got them, and a template's share.
        #expect((UsageBounds.templateTokens...2_048).contains(charged.promptTokens) && charged.completionTokens == 3, "\(charged)")
        #expect(try await inflated.database.ledger().isEmpty)
        #expect(try await inflated.database.receiptRejections().map(\.reason) == ["mismatch"])
    }

    /// An event that never ends breaks the node's stream at the splitter's bound: the client hears that the stream
    /// broke, instead of the gateway reading on for as long as the node sends.
    @Test func anEventThatNeverEndsBreaksTheStream() async throws {
        let endless =
            [FakeNodeTransport.roleEvent, #"data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":""#]
            + Array(repeating: String(repeating: "a", count: 64 << 10), count: 48)
        let (gateway, _) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: endless)])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(streamingChat(maxTokens: 8))) { response in
                let text = String(buffer: response.body)
                #expect(text.contains("upstream_failed"), "\(text.prefix(300))")
                #expect(text.utf8.count < 4096, "the endless event was passed on")
            }
        }
        await gateway.settled()
        #expect(try await gateway.database.recentUsage().first?.status == "upstream_error")
    }

    /// A 200 that is no completion (empty, as when a node's engine broke off mid-answer, or any other JSON) is a broken
    /// answer, not the client's: a 502 once no other node can give it.
    @Test(arguments: ["", #"{"object":"error"}"#, "not json"])
    func aWholeAnswerThatIsNoCompletionIsNotPassedOn(body: String) async throws {
        let (gateway, _) = try await makeGateway([nodeA: .respond(status: 200, contentType: "application/json", chunks: body.isEmpty ? [] : [body])])
        try await gateway.application.test(.router) { client in
            announce(gateway, announcement(nodeA))
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                #expect(response.status == .badGateway)
                #expect(String(buffer: response.body).contains("upstream_failed"))
            }
        }
    }

    /// A whole answer longer than its tokens can make (`UsageBounds.answerBytes`) is a broken one, a 502 once no other
    /// node can give it, and is not held whole: the same bytes answer a request that allowed that many more tokens.
    @Test func aWholeAnswerLongerThanItsTokensCanMakeIsNotHeld() async throws {
        let text = String(repeating: "w", count: 200 << 10)
        let answer =
            #"{"id":"chatcmpl-1","object":"chat.completion","created":42,"choices":[{"index":0,"message":{"role":"assistant","content":"\#(text)"},"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}"#
        let bytes = Array(answer.utf8)
        let chunks = stride(from: 0, to: bytes.count, by: 16 << 10).map {
            String(decoding: bytes[$0..<min($0 + (16 << 10), bytes.count)], as: UTF8.self)
        }
        for (maxTokens, answered) in [(8, false), (64, true)] {
            let (gateway, _) = try await makeGateway([nodeA: .respond(status: 200, contentType: "application/json", chunks: chunks)])
            var asked = chatBody
            asked["max_tokens"] = .integer(Int64(maxTokens))
            let body = asked
            try await gateway.application.test(.router) { client in
                announce(gateway, announcement(nodeA))
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                    if answered {
                        #expect(response.status == .ok)
                        #expect(response.body.readableBytes == bytes.count)
                    } else {
                        #expect(response.status == .badGateway, "max_tokens \(maxTokens)")
                        #expect(String(buffer: response.body).contains("upstream_failed"))
                    }
                }
            }
            await gateway.settled()
            #expect(try await gateway.database.recentUsage().first?.status == (answered ? "ok" : "upstream_error"))
        }
    }

    /// A continuation's prefill is added to the part's counts: a node's header with a count no engine can make is none.
    @Test func aPrefillNoEngineCanMakeIsNone() {
        #expect(NodeLinks.prefill("3") == 3)
        #expect(NodeLinks.prefill("2147483647") == 2_147_483_647)
        for bad in ["-1", "9223372036854775807", "2147483648", "3.5", "", "x"] { #expect(NodeLinks.prefill(bad) == nil, "\(bad)") }
        #expect(NodeLinks.prefill(nil) == nil)
    }
}
