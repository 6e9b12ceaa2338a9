/// What one server-sent event of a completion stream is, to the counting.
package enum StreamEvent: Sendable, Equatable {
    /// The usage report; `usageOnly` when it is the extra chunk with no choices that `include_usage` adds.
    case usage(TokenUsage, usageOnly: Bool)
    /// The `[DONE]` terminator.
    case done
    /// Anything else: content, role or finish chunks.
    case other

    /// Classifies one whole event by scanning its bytes; only an event with a `usage` object is decoded (OpenAI's
    /// servers send `"usage":null` in every chunk when asked for usage, and those are not).
    /// An event's bytes are read where they lie: a generic collection from another module is read through its witness
    /// tables, its type's metadata looked up at run time, on every event of every stream.
    package static func classify(bytes: UnsafeRawBufferPointer) -> StreamEvent {
        if hasUsageObject(bytes) {
            if let payload = SSEFraming.payloadBytes(of: bytes), let chunk = CompletionChunk.parse(payload), let usage = chunk.usage {
                return .usage(usage, usageOnly: chunk.choices?.isEmpty ?? true)
            }
        } else if ByteSearch.firstIndex(of: "[DONE]", in: bytes) != nil {
            return .done
        }
        return .other
    }

    /// The first `finish_reason` an event states (a string: `null` is none yet), whatever the spaces around its colon
    /// (an owner's server may not write compact JSON, and its events reach the gateway as it wrote them).
    package static func finishReason(bytes: UnsafeRawBufferPointer) -> String? {
        firstValue(of: #""finish_reason""#, in: bytes) { start in
            guard bytes[start] == UInt8(ascii: "\""), let end = bytes[(start + 1)...].firstIndex(of: UInt8(ascii: "\"")) else { return nil }
            return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(start + 1)..<end]), as: UTF8.self)
        }
    }

    /// Whether an event has a `data:` line (one of only comments has none).
    package static func carriesData(bytes: UnsafeRawBufferPointer) -> Bool {
        ByteSearch.hasPrefix("data:", in: bytes) || ByteSearch.firstIndex(of: "\ndata:", in: bytes) != nil
    }

    /// Whether `"usage"` is followed by an object, whatever the spaces between.
    private static func hasUsageObject(_ bytes: UnsafeRawBufferPointer) -> Bool {
        firstValue(of: #""usage""#, in: bytes) { bytes[$0] == UInt8(ascii: "{") ? true : nil } ?? false
    }

    /// The first non-nil `body(offset)`, called with the offset of the value of each member named `key` (quoted) in
    /// turn: past the colon and the spaces around it.
    private static func firstValue<Result>(of key: StaticString, in bytes: UnsafeRawBufferPointer, _ body: (Int) -> Result?) -> Result? {
        var start = 0
        while let found = ByteSearch.firstIndex(of: key, in: UnsafeRawBufferPointer(rebasing: bytes[start...])) {
            var cursor = start + found + key.utf8CodeUnitCount
            var colon = false
            scan: while cursor < bytes.count {
                switch bytes[cursor] {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"): cursor += 1
                case UInt8(ascii: ":") where !colon:
                    colon = true
                    cursor += 1
                default: break scan
                }
            }
            if colon, cursor < bytes.count, let result = body(cursor) { return result }
            start += found + 1
        }
        return nil
    }
}

/// What a completion stream is worth in tokens, counted one way by the node (for its receipt) and by the gateway (to
/// check that receipt and to charge): the engine's usage event when it came; otherwise, for a stream cut short or a
/// server that reports no usage, the prompt size from the engine's per-token timings and one completion token per
/// event after the first (which carries only the role).
package struct StreamTokenCount: Sendable, Equatable {
    package private(set) var usage: TokenUsage?
    /// Events that are neither the usage report alone nor `[DONE]`.
    package private(set) var events = 0
    package private(set) var promptFromTimings: Int?

    package init() {}

    /// Counts one whole event (its bytes through the blank line, where they lie) and says what it is.
    @discardableResult
    package mutating func observe(bytes event: UnsafeRawBufferPointer) -> StreamEvent {
        let kind = StreamEvent.classify(bytes: event)
        switch kind {
        case .usage(let reported, let usageOnly):
            usage = reported
            if !usageOnly { events += 1 }
        case .done: break
        case .other:
            // A comment (`: ping`, a keep-alive some servers and proxies send while a prompt is read) is no event of
            // the answer: counted, it would be charged as a token, and cut a stream at `max_tokens` early.
            guard StreamEvent.carriesData(bytes: event) else { return kind }
            events += 1
            if promptFromTimings == nil { promptFromTimings = EngineTimings.promptTokens(bytes: event) }
        }
        return kind
    }

    /// Completion tokens when the engine reported none.
    package var fallbackCompletionTokens: Int { max(0, events - 1) }

    /// The counts to charge, and to sign or check a receipt with: the engine's, or what a cut stream had consumed.
    package var counted: TokenUsage? {
        if let usage { return usage }
        guard events > 0 || promptFromTimings != nil else { return nil }
        return TokenUsage(promptTokens: promptFromTimings ?? 0, completionTokens: fallbackCompletionTokens)
    }
}
