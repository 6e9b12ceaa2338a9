import HearthFuzzing
import Testing

@testable import HearthCore

/// The byte-level helpers of the streaming path, each against a plain statement of the same rule.
struct SSEFramingTests {
    /// Random events over the bytes that matter to the rule (`data:`, spaces, CR, LF, colons), checked against the
    /// rule written with `split`: the hand-walked version must agree on every one, including the odd cases.
    @Test func eventDataMatchesThePlainRuleOnRandomEvents() async {
        var generator = SplitMix(seed: 0x5EED)
        let pieces: [[UInt8]] = ["data:", "data: ", "data:  ", "\n", "\r\n", "\r", ":", "x", "{\"a\":1}", " ", "dat", "event: e"].map {
            Array($0.utf8)
        }
        for iteration in 0..<20_000 {
            await pace(iteration, every: 512)
            var event: [UInt8] = []
            for _ in 0..<Int(generator.next() % 9) { event += pieces[Int(generator.next() % UInt64(pieces.count))] }
            let plain = FuzzTarget.plainPayload(of: event)
            #expect(SSEFraming.payloadBytes(of: event) == plain, "\(String(decoding: event, as: UTF8.self).debugDescription)")
            // Read in place when there is one data line, joined when several: the same bytes either way.
            #expect(
                event.withUnsafeBytes { bytes in SSEFraming.withPayload(of: bytes) { Array($0) } } == plain,
                "in place: \(String(decoding: event, as: UTF8.self).debugDescription)"
            )
        }
    }

    @Test func eventDataOfTheCommonShapes() {
        #expect(SSEFraming.payload(of: Array("data: {\"a\":1}\n\n".utf8)) == "{\"a\":1}")
        #expect(SSEFraming.payload(of: Array("data:x\r\ndata: y\r\n\r\n".utf8)) == "x\ny")
        #expect(SSEFraming.payload(of: Array(": comment\nevent: e\n\n".utf8)) == nil)
        #expect(SSEFraming.payload(of: Array("data:\n\n".utf8)) == nil)
        #expect(SSEFraming.payload(of: Array("data: [DONE]".utf8)) == "[DONE]")
    }

    @Test func findsBytesWithoutCopyingAndOnlyWhereTheyAre() {
        let haystack = Array(#"data: {"usage":{"prompt_tokens":3}}"#.utf8)
        haystack.withUnsafeBytes { bytes in
            #expect(ByteSearch.firstIndex(of: #""usage""#, in: bytes) == 7)
            #expect(ByteSearch.firstIndex(of: "data", in: bytes) == 0)
            #expect(ByteSearch.firstIndex(of: "}}", in: bytes) == haystack.count - 2)
            #expect(ByteSearch.firstIndex(of: #""usage":["#, in: bytes) == nil)
            #expect(ByteSearch.firstIndex(of: "", in: bytes) == nil)
            #expect(ByteSearch.firstIndex(of: "x", in: UnsafeRawBufferPointer(rebasing: bytes[0..<0])) == nil)
        }
        #expect(ByteSearch.contains("[DONE]", in: Array("data: [DONE]\n\n".utf8)))
        #expect(!ByteSearch.contains("[DONE]", in: Array("data: [DONE\n\n".utf8)))
    }

    /// The search steps by the needle's first letter, not its first byte: it must still find the first occurrence
    /// wherever it lies, near misses and overlaps included, as a byte-by-byte comparison does.
    @Test func findsWhatAByteByByteSearchFinds() {
        var generator = SystemRandomNumberGenerator()
        let alphabet = Array(#""u:a{ ,g}e"#.utf8)
        let needles = [#""usage""#, #""u"#, "u\"", "\"\"", "e\"", ":{", "{,", "\"usage\":{", "a", "\""]
        for round in 0..<2_000 {
            let haystack = (0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! }
            let needle = Array(needles[round % needles.count].utf8)
            let starts = haystack.count < needle.count ? [] : Array(0...(haystack.count - needle.count))
            let expected = starts.first { haystack[$0..<($0 + needle.count)].elementsEqual(needle) }
            let found = haystack.withUnsafeBytes { bytes in needle.withUnsafeBytes { ByteSearch.firstIndex(of: $0, in: bytes) } }
            #expect(found == expected, "\(String(decoding: needle, as: UTF8.self)) in \(String(decoding: haystack, as: UTF8.self))")
        }
        Array("data: x".utf8).withUnsafeBytes { bytes in
            #expect(ByteSearch.hasPrefix("data:", in: bytes))
            #expect(!ByteSearch.hasPrefix("x", in: bytes))
            #expect(!ByteSearch.hasPrefix("data: x and more", in: bytes))
            #expect(ByteSearch.hasPrefix("", in: bytes))
        }
    }

    @Test func readsThePromptCountOfLlamaServersTimings() {
        #expect(EngineTimings.promptTokens(in: Array(#"{"timings":{"prompt_n":17,"predicted_n":1}}"#.utf8)) == 17)
        #expect(EngineTimings.promptTokens(in: Array(#"{"timings":{"prompt_n":  4}}"#.utf8)) == 4)
        #expect(EngineTimings.promptTokens(in: Array(#"{"timings":{"prompt_n":"4"}}"#.utf8)) == nil)
        #expect(EngineTimings.promptTokens(in: Array(#"{"prompt_ms":1.5}"#.utf8)) == nil)
        #expect(EngineTimings.promptTokens(in: Array(#"{"prompt_n":"#.utf8)) == nil)
        // Ten digits at most: a number that would overflow is cut, not trapped on.
        #expect(EngineTimings.promptTokens(in: Array(#"{"prompt_n":99999999999999999999999}"#.utf8)) == 9_999_999_999)
    }
}

/// One way of counting a stream's tokens, for the node's receipt and the gateway's check of it.
struct StreamTokenCountTests {
    static func event(_ json: String) -> [UInt8] { Array("data: \(json)\n\n".utf8) }

    @Test func classifiesUsageDoneAndTheRest() {
        let usage = TokenUsage(promptTokens: 5, completionTokens: 9)
        #expect(
            StreamEvent.classify(Self.event(#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#)) == .usage(usage, usageOnly: true)
        )
        // Spaces as another server writes them, and usage riding on the last content chunk.
        #expect(
            StreamEvent.classify(Self.event(#"{"choices": [{"delta": {}}], "usage" : { "prompt_tokens": 5, "completion_tokens": 9 }}"#))
                == .usage(usage, usageOnly: false)
        )
        // OpenAI's `"usage":null` on every chunk, a quoted "usage" in the text, and [DONE].
        #expect(StreamEvent.classify(Self.event(#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#)) == .other)
        #expect(StreamEvent.classify(Self.event(#"{"choices":[{"delta":{"content":"\"usage\": {"}}]}"#)) == .other)
        #expect(StreamEvent.classify(Array("data: [DONE]\n\n".utf8)) == .done)
    }

    @Test func readsAFinishReasonHoweverItIsSpaced() {
        #expect(StreamEvent.finishReason(in: Self.event(#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}]}"#)) == "stop")
        #expect(StreamEvent.finishReason(in: Self.event(#"{"choices": [{"finish_reason" : "length", "index": 0}]}"#)) == "length")
        // Not yet finished, a second choice that is, and the member's name inside the text.
        #expect(StreamEvent.finishReason(in: Self.event(#"{"choices":[{"finish_reason":null,"delta":{"content":"x"}}]}"#)) == nil)
        #expect(
            StreamEvent.finishReason(in: Self.event(#"{"choices":[{"index":0,"finish_reason":null},{"index":1,"finish_reason":"stop"}]}"#))
                == "stop"
        )
        #expect(StreamEvent.finishReason(in: Self.event(#"{"choices":[{"delta":{"content":"\"finish_reason\":\"stop\""}}]}"#)) == nil)
        #expect(StreamEvent.finishReason(in: Array("data: [DONE]\n\n".utf8)) == nil)
    }

    @Test func countsWhatACutStreamConsumedAndPrefersTheEnginesUsage() {
        var count = StreamTokenCount()
        #expect(count.counted == nil)
        count.observe(Self.event(#"{"choices":[{"delta":{"role":"assistant"}}],"timings":{"prompt_n":11}}"#))
        count.observe(Self.event(#"{"choices":[{"delta":{"content":"a"}}],"timings":{"prompt_n":99}}"#))
        count.observe(Self.event(#"{"choices":[{"delta":{"content":"b"}}]}"#))
        #expect(count.counted == TokenUsage(promptTokens: 11, completionTokens: 2))
        count.observe(Array("data: [DONE]\n\n".utf8))
        #expect(count.events == 3)
        count.observe(Self.event(#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}"#))
        #expect(count.events == 3 && count.counted == TokenUsage(promptTokens: 12, completionTokens: 2))
    }

    /// A comment event (a keep-alive some servers and proxies send while a prompt is read) is no token: counted, it
    /// was charged as one, and a stream of them would be cut at `max_tokens` before its answer began.
    @Test func commentsAreNotCounted() {
        var count = StreamTokenCount()
        for _ in 0..<50 { count.observe(Array(": OPENROUTER PROCESSING\n\n".utf8)) }
        count.observe(Array(": ping\r\n\r\n".utf8))
        #expect(count.events == 0 && count.counted == nil)
        count.observe(Array(": hearth-token 12 clean\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".utf8))
        count.observe(Self.event(#"{"choices":[{"delta":{"content":"b"}}]}"#))
        #expect(count.events == 2)
        #expect(StreamEvent.carriesData(Array("event: message\ndata: {}\n\n".utf8)))
        #expect(!StreamEvent.carriesData(Array(": a comment that says data: here\n\n".utf8)))
    }
}

// The counting reads an event's bytes where they lie; these tests hold their events in arrays.
extension StreamEvent {
    static func classify(_ event: [UInt8]) -> StreamEvent { event.withUnsafeBytes { classify(bytes: $0) } }
    static func finishReason(in event: [UInt8]) -> String? { event.withUnsafeBytes { finishReason(bytes: $0) } }
    static func carriesData(_ event: [UInt8]) -> Bool { event.withUnsafeBytes { carriesData(bytes: $0) } }
}

extension EngineTimings {
    static func promptTokens(in event: [UInt8]) -> Int? { event.withUnsafeBytes { promptTokens(bytes: $0) } }
}

extension StreamTokenCount {
    @discardableResult
    mutating func observe(_ event: [UInt8]) -> StreamEvent { event.withUnsafeBytes { observe(bytes: $0) } }
}
