import Foundation
import HearthMesh
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthNode

/// The node's rewriting of engine streams, on events shaped as llama-server b11434 writes them (recorded from a real
/// engine; the live path is in ContinuationTests of HearthIntegrationTests).
struct EngineStreamRewriterTests {
    static func chatEvent(_ text: String?, token: (Int, [UInt8])?, finish: String? = nil) -> String {
        let delta = text.map { #"{"content":\#(quoted($0))}"# } ?? "{}"
        let logprobs =
            token.map { id, bytes in
                #","logprobs":{"content":[{"id":\#(id),"token":"t","bytes":\#(bytes),"logprob":-0.5,"top_logprobs":[{"id":\#(id),"token":"t","bytes":\#(bytes),"logprob":-0.5}]}]}"#
            } ?? ""
        let reason = finish.map(quoted) ?? "null"
        return
            #"data: {"choices":[{"finish_reason":\#(reason),"index":0,"delta":\#(delta)\#(logprobs)}],"created":1796294059,"id":"chatcmpl-x","model":"m","object":"chat.completion.chunk"}"#
            + "\n\n"
    }

    static func textEvent(_ text: String, token: (Int, [UInt8])) -> String {
        #"data: {"choices":[{"text":\#(quoted(text)),"index":0,"logprobs":{"content":[{"id":\#(token.0),"token":"t","bytes":\#(token.1),"logprob":-1.0,"top_logprobs":[]}]},"finish_reason":null}],"created":7,"id":"cmpl-y","model":"m","object":"text_completion"}"#
            + "\n\n"
    }

    static func quoted(_ text: String) -> String {
        String(decoding: try! JSONEncoder().encode(text), as: UTF8.self)
    }

    /// An event's mark line, if it has one.
    static func markLine(_ event: String) -> String? {
        event.hasPrefix(":") ? event.split(separator: "\n").first.map(String.init) : nil
    }

    /// An event's JSON data, read past its mark line as an SSE client would.
    func payload(_ event: String) -> JSONValue? {
        SSEFraming.payload(of: Array(event.utf8)).flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
    }

    /// Feeds `stream` cut into `size`-byte chunks and returns the events written.
    func rewrite(_ stream: String, shape: EngineStreamRewriter.Shape, size: Int) throws -> [String] {
        var rewriter = EngineStreamRewriter(shape: shape)
        var output = ""
        let bytes = Array(stream.utf8)
        var start = 0
        while start < bytes.count {
            let chunk = ByteBuffer(bytes: bytes[start..<min(bytes.count, start + size)])
            output += String(buffer: try rewriter.rewrite(chunk))
            start += size
        }
        output += String(buffer: try rewriter.finish())
        return output.components(separatedBy: "\n\n").filter { !$0.isEmpty }
    }

    @Test func marksEachTokenAndRemovesTheLogprobsOnlyTheNodeWanted() throws {
        let stream =
            Self.chatEvent(nil, token: nil).replacingOccurrences(of: #""delta":{}"#, with: #""delta":{"role":"assistant","content":null}"#)
            + Self.chatEvent("I", token: (57, [73])) + Self.chatEvent("'m", token: (5248, [39, 109]))
            // "é" as two byte tokens: the engine reports only the second, with the whole character.
            + Self.chatEvent("é", token: (202, [0xA9])) + Self.chatEvent(nil, token: nil, finish: "length") + "data: [DONE]\n\n"
        for size in [1, 7, 64, 4096] {
            let events = try rewrite(stream, shape: .init(chat: true, keepLogprobs: false), size: size)
            #expect(events.count == 6, "chunks of \(size)")
            #expect(events.allSatisfy { !$0.contains("logprobs") })
            #expect(!events[0].hasPrefix(":"), "the role chunk carries no token")
            #expect(events[1].hasPrefix(": hearth-token 57 clean\ndata: {"))
            #expect(events[2].hasPrefix(": hearth-token 5248 clean\n"))
            #expect(events[3].hasPrefix(": hearth-token 202 gap\n"))
            #expect(events[5] == "data: [DONE]")
            #expect(events.compactMap { payload($0)?["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined() == "I'mé")
        }
        let kept = try rewrite(stream, shape: .init(chat: true, keepLogprobs: true), size: 4096)
        #expect(payload(kept[1])?["choices"]?[0]?["logprobs"]?["content"]?[0]?["bytes"] == [73])
    }

    /// The mark is written into the event's buffer piece by piece: the same line the gateway reads back.
    @Test func aMarkIsWrittenAsItsLine() throws {
        for mark in [TokenMark(token: 0, kind: .clean), TokenMark(token: Int32.max, kind: .held), TokenMark(token: nil, kind: .gap)] {
            var buffer = ByteBuffer()
            buffer.writeMark(mark)
            #expect(String(buffer: buffer) == mark.line)
            #expect(buffer.withUnsafeReadableBytes { TokenMark.parse($0) }?.mark == mark)
        }
    }

    /// Events are edited in place (their bytes spliced) rather than parsed and written again: both ways must give the
    /// same marks and the same JSON, for every shape, on events with escapes, spacing, several choices and none.
    @Test func editingInPlaceGivesWhatParsingGives() throws {
        let events = [
            Self.chatEvent(nil, token: nil).replacingOccurrences(of: #""delta":{}"#, with: #""delta":{"role":"assistant","content":null}"#),
            Self.chatEvent("I", token: (57, [73])),
            Self.chatEvent("a \"quote\"\n\tand\\ \u{e9}", token: (12, [97])),
            Self.chatEvent("é", token: (202, [0xA9])),
            Self.chatEvent(nil, token: nil, finish: "length"),
            Self.textEvent(" time", token: (673, Array(" time".utf8))),
            #"data: { "choices" : [ { "text" : "\u00e9\/x", "index" : 0 , "finish_reason" : null } , {"text":"b","index":1,"logprobs":null} ], "model" : "m" , "id":"c","created":3 }"#
                + "\n\n",
            #"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"model":"m","id":"c","created":4}"# + "\n\n",
            #"data: {"choices":[{"delta":{"content":"x"},"logprobs":{"content":[{"id":5,"bytes":[120]}]}}],"id":"c","created":5}"# + "\n\n",
            // Events the splicing leaves to the parser (a continuation's event without `created`, a choice that is no
            // object), each holding half a character: the marker must take each once, whichever path writes it, or
            // the next event's other half reads as a gap.
            #"data: {"choices":[{"text":"","index":0,"logprobs":{"content":[{"id":20,"bytes":[195]}]}}],"id":"c"}"# + "\n\n",
            #"data: {"choices":[{"text":"\u00e9","index":0,"logprobs":{"content":[{"id":21,"bytes":[169]}]}}],"id":"c","created":6}"# + "\n\n",
            #"data: {"choices":[{"text":"","logprobs":{"content":[{"id":22,"bytes":[195]}]}},7],"id":"c","created":7}"# + "\n\n",
            #"data: {"choices":[{"text":"\u00e9","logprobs":{"content":[{"id":23,"bytes":[169]}]}}],"id":"c","created":8}"# + "\n\n",
            // The sampled token read off the outline as the parser reads it: after sampling (`prob`), laid out with
            // spaces and a whole number written as a fraction, a byte out of range, no entry at all.
            #"data: {"choices":[{"delta":{"content":"y"},"logprobs":{"content":[{"id":6,"token":"y","bytes":[121],"prob":0.5,"top_probs":[{"id":6,"token":"y","bytes":[121],"prob":0.5}]}]}}],"id":"c","created":9}"#
                + "\n\n",
            #"data: {"choices":[{"delta":{"content":"z"},"logprobs" : { "content" : [ { "bytes" : [ 122 ] , "id" : 8.0 } ] }}],"id":"c","created":10}"#
                + "\n\n",
            #"data: {"choices":[{"delta":{"content":"q"},"logprobs":{"content":[{"id":9,"bytes":[300]}]}}],"id":"c","created":11}"# + "\n\n",
            #"data: {"choices":[{"delta":{"content":"w"},"logprobs":{"content":[]}}],"id":"c","created":12}"# + "\n\n",
            "data: [DONE]\n\n",
        ].joined()
        let shapes: [EngineStreamRewriter.Shape] = [
            .init(chat: true, keepLogprobs: false), .init(chat: true, keepLogprobs: true), .init(chat: false, keepLogprobs: false),
            .init(chat: true, keepLogprobs: false, model: "catalog:id"), .init(chat: false, keepLogprobs: false, continuation: ("cmpl-o", 9, false)),
        ]
        for shape in shapes {
            var edited = EngineStreamRewriter(shape: shape)
            var parsed = EngineStreamRewriter(shape: shape)
            parsed.editsInPlace = false
            let fast = String(buffer: try edited.rewrite(ByteBuffer(string: events))).components(separatedBy: "\n\n")
            let slow = String(buffer: try parsed.rewrite(ByteBuffer(string: events))).components(separatedBy: "\n\n")
            #expect(fast.count == slow.count && fast.count == 19)
            for (one, other) in zip(fast, slow) {
                #expect(Self.markLine(one) == Self.markLine(other), "\(one) against \(other)")
                #expect(payload(one) == payload(other), "\(shape.chat) \(shape.keepLogprobs): \(one) against \(other)")
            }
            // The engine's spacing and member order stay where the event was edited in place.
            #expect(fast.contains { $0.contains(#"{ "choices" : ["#) } && !slow.contains { $0.contains(#"{ "choices" : ["#) })
        }
    }

    @Test func aContinuedChatTurnsTextCompletionEventsIntoChatChunksOfTheClientsStream() throws {
        let stream = Self.textEvent(" time", token: (673, Array(" time".utf8))) + Self.textEvent(".", token: (30, [46])) + "data: [DONE]\n\n"
        let shape = EngineStreamRewriter.Shape(chat: true, keepLogprobs: false, continuation: ("chatcmpl-original", 42, true))
        let events = try rewrite(stream, shape: shape, size: 5)
        #expect(events.count == 3)
        #expect(events[0].hasPrefix(": hearth-token 673 clean\n"))
        let chunk = try #require(payload(events[0]))
        #expect(chunk["id"] == "chatcmpl-original")
        #expect(chunk["created"] == 42)
        #expect(chunk["object"] == "chat.completion.chunk")
        #expect(chunk["choices"]?[0]?["delta"]?["content"] == " time")
        #expect(chunk["choices"]?[0]?["text"] == nil)
        #expect(chunk["choices"]?[0]?["logprobs"] == nil)

        // A continued text completion stays one, with null log-probabilities as OpenAI writes them.
        let text = try rewrite(stream, shape: .init(chat: false, keepLogprobs: false, continuation: ("cmpl-original", 9, false)), size: 4096)
        let textChunk = try #require(payload(text[1]))
        #expect(textChunk["id"] == "cmpl-original" && textChunk["object"] == "text_completion")
        #expect(textChunk["choices"]?[0]?["text"] == ".")
        #expect(textChunk["choices"]?[0]?["logprobs"] == .null)
    }

    /// An engine (an owner's server) whose event never ends breaks the relay at the splitter's bound instead of
    /// filling the node's memory; the relay then drops the engine's request (`EngineRelay.forward`).
    @Test func anEventThatNeverEndsBreaksTheRewriteAtItsBound() throws {
        var rewriter = EngineStreamRewriter(shape: .init(chat: true, keepLogprobs: false))
        let whole = #"data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}"# + "\n\n"
        #expect(try String(buffer: rewriter.rewrite(ByteBuffer(string: whole + #"data: {"x":""#))).hasSuffix(whole))
        let chunk = ByteBuffer(repeating: UInt8(ascii: "a"), count: 256 << 10)
        #expect(throws: SSEEventSplitter.EventTooLarge.self) {
            for _ in 0..<5 { _ = try rewriter.rewrite(chunk) }
        }
    }

    @Test func eventsItCannotReadPassUnchanged() throws {
        let stream = ": ping\n\n" + "data: not json\n\n" + "data: [DONE]\n\n" + "data: {\"unterminated\""
        #expect(
            try rewrite(stream, shape: .init(chat: true, keepLogprobs: false), size: 3) == [
                ": ping", "data: not json", "data: [DONE]", "data: {\"unterminated\"",
            ]
        )
    }

    /// A server that answered a stream's request whole: the rewriter keeps the answer, however it is cut, and at its end
    /// writes the stream's events of it, renamed to the catalog's model and marked like a streamed one, then `[DONE]`.
    @Test func aWholeAnswerBecomesTheStreamsEvents() throws {
        let answer =
            #"{"id":"chatcmpl-417","object":"chat.completion","created":17,"model":"owners-name","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":2,"total_tokens":33}}"#
        for size in [1, 13, 4096] {
            var rewriter = EngineStreamRewriter(shape: .init(chat: true, keepLogprobs: false, model: "catalog:id"))
            rewriter.answeredWhole()
            var output = ""
            let bytes = Array(answer.utf8)
            for start in stride(from: 0, to: bytes.count, by: size) {
                output += String(buffer: try rewriter.rewrite(ByteBuffer(bytes: bytes[start..<min(bytes.count, start + size)])))
            }
            #expect(output.isEmpty, "nothing is written before the answer is whole")
            output += String(buffer: try rewriter.finish())
            let events = output.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.count == 4 && events.last == "data: [DONE]", "\(output)")
            let payloads = events.dropLast().compactMap(payload)
            #expect(payloads.count == 3)
            #expect(payloads.allSatisfy { $0["model"] == "catalog:id" && $0["object"] == "chat.completion.chunk" })
            #expect(payloads[0]["choices"]?[0]?["delta"]?["content"] == "Paris.")
            #expect(Self.markLine(events[0])?.hasPrefix(": hearth-") == true, "the text is marked for a continuation: \(events[0])")
            #expect(payloads[2]["usage"]?["completion_tokens"] == 2)
        }
    }

    @Test func aWholeAnswerPastItsBoundOrNotACompletionBreaksTheStream() throws {
        var long = EngineStreamRewriter(shape: .init(chat: true, keepLogprobs: false))
        long.answeredWhole()
        let chunk = ByteBuffer(repeating: UInt8(ascii: " "), count: 8 << 20)
        #expect(throws: EngineStreamRewriter.WholeAnswerTooLong.self) {
            for _ in 0...(UsageBounds.largestWholeAnswer / chunk.readableBytes) { _ = try long.rewrite(chunk) }
        }
        var unreadable = EngineStreamRewriter(shape: .init(chat: true, keepLogprobs: false))
        unreadable.answeredWhole()
        _ = try unreadable.rewrite(ByteBuffer(string: #"{"error":{"message":"busy"}}"#))
        #expect(throws: EngineStreamRewriter.WholeAnswerUnreadable.self) { _ = try unreadable.finish() }
    }
}
