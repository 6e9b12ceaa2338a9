/// Token counts as the engine reports them in `usage`.
package struct TokenUsage: Codable, Sendable, Equatable {
    package var promptTokens: Int
    package var completionTokens: Int

    package init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    package var totalTokens: Int { promptTokens + completionTokens }

    /// The counts a report may hold to be read at all.
    package static let plausible: ClosedRange<Int64> = 0...Int64(Int32.max)

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try container.decode(Int.self, forKey: .promptTokens)
        completionTokens = try container.decode(Int.self, forKey: .completionTokens)
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// The most one answer can honestly count, from what the gateway knows without the model's tokenizer: a prompt makes
/// at most a token per byte of the request the node got (every token covers a byte of text at least) plus what a chat
/// template adds (role markers, a default system prompt), and a completion at most its `max_tokens`. A node's report
/// above them is charged and credited no further (`ServedRequest.finish`, `Receipt.problem`): without them a node, or
/// the owner's server behind it, could charge a client for a million tokens it never asked for, or credit itself.
/// The bytes an answer may take follow from the same count (`answerBytes`).
package struct UsageBounds: Sendable, Equatable {
    /// The most bytes of one whole answer (a completion's or an embeddings answer) that is held in memory, whatever its
    /// request asked for: the node's limit on its engine's answer and the gateway's on a node's. A longer one fails.
    package static let largestWholeAnswer = 64 << 20

    package var promptTokens: Int
    package var completionTokens: Int
    /// The most bytes an honest answer takes: the request's own (a server may repeat its prompt, as llama-server's
    /// `verbose` does), and for each token it may make and the two events beside them (role, finish) `eventBytes`, and
    /// `alternativeBytes` more for each log-probability alternative the request asked for. A stream past it is cut
    /// like one past `max_tokens` (`ContinuingStream`), a whole answer past it is a broken one: a node could otherwise
    /// send a megabyte an event to a client that asked for a few tokens, or make the gateway hold a whole answer of
    /// tens of megabytes for each of them.
    package var answerBytes: Int

    /// What a chat template may add to the request's own bytes: the catalog's templates add a few tokens a message
    /// and at most a short default system prompt (Qwen 2.5's and Llama 3.2's are 20 to 30 tokens).
    package static let templateTokens = 256
    /// Events of a stream beside its tokens: the first (the role) and the last (the finish reason). llama-server's
    /// chat stream of N tokens is N + 2 events, its text completion's N + 1.
    static let eventsBesideTokens = 2
    /// The bytes an event (or a token of a whole answer) takes at most on average: llama-server's are a few hundred.
    package static let eventBytes = 8 << 10
    /// One log-probability alternative (id, token, its bytes, log-probability) is about 100 bytes.
    package static let alternativeBytes = 512

    /// - Parameter alternatives: the log-probability alternatives asked for each token (`alternatives(in:)`).
    package init(requestBytes: Int, maxTokens: Int, alternatives: Int = 0) {
        // Each number at most 2^40 (an event's bytes 2^19): no sum or product here can overflow.
        let requestBytes = min(max(0, requestBytes), 1 << 40)
        promptTokens = requestBytes + Self.templateTokens
        completionTokens = max(0, maxTokens)
        let eventBytes = Self.eventBytes + min(max(0, alternatives), 1 << 10) * Self.alternativeBytes
        answerBytes = requestBytes + Self.events(allowing: completionTokens) * eventBytes
    }

    /// The most events a stream of the answer may have: a token each and the two beside them. A node's stream with
    /// more went past what the client allowed, even with its marks (which count its tokens exactly) stripped.
    package var events: Int { Self.events(allowing: completionTokens) }

    private static func events(allowing tokens: Int) -> Int { min(tokens, 1 << 40) + eventsBesideTokens }

    /// The log-probability alternatives a completion request asks for each token: `top_logprobs` for chat,
    /// `logprobs` (a count) for text completions, llama-server's own `n_probs`.
    package static func alternatives(in body: JSONValue) -> Int {
        ["top_logprobs", "logprobs", "n_probs"].compactMap { body[$0]?.integerValue }.map { Int(clamping: $0) }.max() ?? 0
    }

    /// `usage` within the bounds.
    package func clamped(_ usage: TokenUsage) -> TokenUsage {
        TokenUsage(
            promptTokens: min(max(0, usage.promptTokens), promptTokens),
            completionTokens: min(max(0, usage.completionTokens), completionTokens)
        )
    }
}

/// The parts of a streamed chunk (or a whole completion) that Hearth reads: text, finish reason and usage.
package struct CompletionChunk: Decodable, Sendable {
    package struct Choice: Decodable, Sendable {
        struct Delta: Decodable, Sendable {
            var content: String?
        }
        var delta: Delta?
        var message: Delta?
        var text: String?
        package var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case delta, message, text
            case finishReason = "finish_reason"
        }

        /// The new text of this choice, whichever endpoint produced it.
        package var content: String? { delta?.content ?? message?.content ?? text }
    }

    package var choices: [Choice]?
    package var usage: TokenUsage?

    /// Reads one event's JSON with the native parser (`JSONValue+Native`), which costs a fraction of `JSONDecoder`
    /// on the streaming path; `nil` when it is no JSON object, or a member has the wrong type, as decoding would say.
    package static func parse(_ bytes: some Collection<UInt8>) -> CompletionChunk? {
        guard let json = try? JSONValue.parse(bytes), case .object(let members) = json else { return nil }
        var chunk = CompletionChunk()
        switch members["choices"] {
        case nil, .null?: break
        case .array(let elements)?:
            var choices: [Choice] = []
            for element in elements {
                guard case .object(let fields) = element else { return nil }
                func text(_ key: String) -> String?? {
                    switch fields[key] {
                    case nil, .null?: return .some(nil)
                    case .string(let value)?: return .some(value)
                    default: return nil
                    }
                }
                func delta(_ key: String) -> Choice.Delta?? {
                    switch fields[key] {
                    case nil, .null?: return .some(nil)
                    case .object(let inner)?:
                        switch inner["content"] {
                        case nil, .null?: return .some(Choice.Delta(content: nil))
                        case .string(let value)?: return .some(Choice.Delta(content: value))
                        default: return nil
                        }
                    default: return nil
                    }
                }
                guard let deltaValue = delta("delta"), let message = delta("message"), let plain = text("text"), let finish = text("finish_reason")
                else {
                    return nil
                }
                choices.append(Choice(delta: deltaValue, message: message, text: plain, finishReason: finish))
            }
            chunk.choices = choices
        default: return nil
        }
        guard let usage = TokenUsage.reported(members["usage"]) else { return nil }
        chunk.usage = usage
        return chunk
    }

    /// The usage of a whole answer (a node's may be megabytes), read off its outline: only its `usage` is decoded, so
    /// 64 MiB of numbers costs a scan, not a tree of values (as `parse` would make). The outer `nil`: the answer is no
    /// completion (no JSON object with a `choices` array, such as the empty body of an answer that broke off).
    package static func wholeAnswerUsage(_ bytes: UnsafeBufferPointer<UInt8>) -> TokenUsage?? {
        guard let answer = JSONOutline(object: bytes), answer.isWhole(of: bytes),
            let choices = answer.member("choices", in: bytes), bytes[choices.value.lowerBound] == UInt8(ascii: "[")
        else { return nil }
        let usage = answer.member("usage", in: bytes).flatMap { try? JSONValue.parse(bytes[$0.value]) }
        return .some(TokenUsage.reported(usage) ?? nil)
    }
}

extension TokenUsage {
    /// A `usage` member's counts: `.some(nil)` when there is none, or it is `null`, or its counts are no engine's (below
    /// zero, past 2^31: whoever sent them, they are not charged, credited or added up, and a sum of two could overflow);
    /// `nil` when it is not an object or lacks a count, which makes the whole chunk unreadable.
    static func reported(_ value: JSONValue?) -> TokenUsage?? {
        switch value {
        case nil, .null?: return .some(nil)
        case .object(let fields)?:
            guard let prompt = fields["prompt_tokens"]?.integerValue, let completion = fields["completion_tokens"]?.integerValue else { return nil }
            guard plausible.contains(prompt), plausible.contains(completion) else { return .some(nil) }
            return .some(TokenUsage(promptTokens: Int(prompt), completionTokens: Int(completion)))
        default: return nil
        }
    }
}

extension CompletionChunk {
    /// The text the first choice of an event adds (its `delta`'s or `message`'s `content`, or its `text`), read through
    /// the event's outline: only that string is decoded. `nil` when the bytes are no JSON object, there is no choice or
    /// the choice has no text; `""` for a present but empty text.
    package static func firstText(in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard let event = JSONOutline(object: bytes), event.isWhole(of: bytes) else { return nil }
        return firstText(of: event, in: bytes)
    }

    /// `firstText(in:)` over an event already outlined.
    package static func firstText(of event: JSONOutline, in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard let choices = event.member("choices", in: bytes), bytes[choices.value.lowerBound] == UInt8(ascii: "["),
            let first = JSONOutline.elements(ofArray: choices.value, in: bytes)?.first,
            let choice = JSONOutline(object: bytes, at: first.lowerBound)
        else { return nil }
        return text(ofChoice: choice, in: bytes)
    }

    /// The text one choice adds, from its outline (`firstText(of:in:)` for the first choice).
    package static func text(ofChoice choice: JSONOutline, in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        for key: StaticString in ["delta", "message"] {
            guard let member = choice.member(key, in: bytes), bytes[member.value.lowerBound] == UInt8(ascii: "{"),
                let inner = JSONOutline(object: bytes, at: member.value.lowerBound),
                let content = inner.member("content", in: bytes)?.value
            else { continue }
            if let text = string(at: content, in: bytes) { return text }
        }
        return choice.member("text", in: bytes).flatMap { string(at: $0.value, in: bytes) }
    }

    /// The string whose bytes (quotes included) are `range`, decoded; `nil` for anything else.
    static func string(at range: Range<Int>, in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        // Most of a stream's texts are a token or two of plain ASCII: read as they are, not parsed (a parser's string
        // was most of what reading a token's text cost). Anything with an escape or beyond ASCII is parsed.
        if range.count >= 2, bytes[range.upperBound - 1] == UInt8(ascii: "\""),
            case let inner = (range.lowerBound + 1)..<(range.upperBound - 1),
            !bytes[inner].contains(where: { $0 < 0x20 || $0 > 0x7E || $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") })
        {
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[inner]), as: UTF8.self)
        }
        guard case .string(let text)? = try? JSONValue.parse(bytes[range]) else { return nil }
        return text
    }
}

/// llama-server's per-token timings: with `timings_per_token: true` every streamed event carries
/// `"timings":{"prompt_n":…,…}`, so the size of the prompt the engine read is known from the first token on, not only
/// from the usage event at the end. A stream the client cuts short is charged (and credited) for that prompt.
enum EngineTimings {
    /// The request field that asks llama-server for them.
    package static let requestField = "timings_per_token"

    /// The `prompt_n` in an event's bytes, scanned without decoding the event; `nil` when there is none.
    package static func promptTokens(bytes: UnsafeRawBufferPointer) -> Int? {
        let marker: StaticString = #""prompt_n":"#
        guard let found = ByteSearch.firstIndex(of: marker, in: bytes) else { return nil }
        var cursor = found + marker.utf8CodeUnitCount
        while cursor < bytes.count && bytes[cursor] == UInt8(ascii: " ") { cursor += 1 }
        var value = 0
        var digits = 0
        while cursor < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[cursor]), digits < 10 {
            value = value * 10 + Int(bytes[cursor] - UInt8(ascii: "0"))
            digits += 1
            cursor += 1
        }
        return digits > 0 ? value : nil
    }
}
