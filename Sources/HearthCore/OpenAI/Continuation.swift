/// Continuing a stream on another node when the one serving it breaks (docs/ROUTING.md, "Continuation").
///
/// The node serving a stream marks every event that carries generated text with the token it came from
/// (`TokenMark`, written by `TokenMarker`); the gateway keeps those ids, or the event's text where the ids do not cover
/// it (`Generation`). When the stream breaks, the gateway sends the original request to another node serving the same
/// file, with what was generated (`ContinuationRequest`); that node prefills it after the prompt and generates the rest,
/// which the gateway splices into the client's stream.
package enum Continuation {
    /// The request body member that carries a `ContinuationRequest` from the gateway to a node. A client's body never
    /// reaches a node with it (`CompletionRequest` drops it).
    package static let field = "hearth_continuation"

    /// Why a request cannot be continued, or `nil` when it can: a continuation is a text completion of the prompt
    /// followed by the answer so far, so a request whose answer is more than one text (several choices, tool calls, a
    /// schema the engine enforces on the whole answer) or whose prompt is several is not.
    package static func refusal(for body: JSONValue, chat: Bool) -> String? {
        if let count = body["n"]?.integerValue, count > 1 { return "it asks for \(count) choices" }
        guard chat else {
            switch body["prompt"] {
            case .string?: return nil
            case .array(let items)? where !items.isEmpty && items.allSatisfy({ $0.integerValue != nil }): return nil
            default: return "its prompt is not one text or one list of token ids"
            }
        }
        if let tools = body["tools"]?.arrayValue, !tools.isEmpty { return "it offers tools" }
        if let format = body["response_format"], format != .null, format["type"]?.stringValue != "text" {
            return "it asks for a response format"
        }
        return nil
    }
}

/// What a node says about one event of its stream, on a comment line in front of the event's data (SSE clients
/// ignore comment lines; the gateway removes it before relaying): `: hearth-token 57 clean`.
package struct TokenMark: Sendable, Equatable {
    package enum Kind: String, Sendable {
        /// The event's text is exactly the text of the tokens held since the last clean event, then `token`.
        case clean
        /// The event carries no text yet (a stop string may be starting); `token` is owed to the next clean event.
        case held
        /// The event's text is more than its token covers (a character split over tokens whose ids the engine did not
        /// report): the event's text stands for everything since the last clean event.
        case gap

        /// The kind a mark's last field names, read from its bytes.
        init?(_ field: Slice<UnsafeRawBufferPointer>) {
            switch field.first {
            case UInt8(ascii: "c"): self = .clean
            case UInt8(ascii: "h"): self = .held
            case UInt8(ascii: "g"): self = .gap
            default: return nil
            }
            guard field.elementsEqual(rawValue.utf8) else { return nil }
        }
    }

    /// The id of the token the event came from, when the engine reported it.
    package private(set) var token: Int32?
    package private(set) var kind: Kind

    package init(token: Int32?, kind: Kind) {
        self.token = token
        self.kind = kind
    }

    /// The comment line, newline included, that the node writes before the event's data.
    package var line: String {
        LinkProtocol.tokenMarkPrefix + (token.map { String($0) } ?? "-") + " " + kind.rawValue + "\n"
    }

    /// Reads a mark from the first line of an event. Returns the mark and the length of its line (newline included),
    /// or `nil` when the event does not start with one.
    package static func parse(_ event: UnsafeRawBufferPointer) -> (mark: TokenMark, length: Int)? {
        let prefix = LinkProtocol.tokenMarkPrefixBytes
        guard event.count > prefix.count, event.starts(with: prefix) else { return nil }
        guard let newline = event[prefix.count...].firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        // Read in place, once an event on the gateway's streaming path: `<token or -> <kind>`, one space between.
        let line = event[prefix.count..<newline]
        guard let space = line.firstIndex(of: UInt8(ascii: " ")), let kind = Kind(line[(space + 1)...]) else { return nil }
        let token: Int32?
        switch line[..<space] {
        case let field where field.elementsEqual(CollectionOfOne(UInt8(ascii: "-"))): token = nil
        case let field:
            guard let value = Self.decimal(field) else { return nil }
            token = value
        }
        return (TokenMark(token: token, kind: kind), newline + 1)
    }

    /// A token id written in decimal digits only (no sign, no spaces), or `nil`; ids past `Int32.max` are none.
    private static func decimal(_ digits: Slice<UnsafeRawBufferPointer>) -> Int32? {
        guard !digits.isEmpty, digits.count <= 10 else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        return value <= Int64(Int32.max) ? Int32(value) : nil
    }
}

/// The node's side: decides each event's mark from the event's text and the token the engine reported with it.
///
/// llama-server reports the sampled token of each event (with log-probabilities asked for), but sends no event for a
/// token that ends inside a UTF-8 character, and an event with no text for one that may begin a stop string. Comparing
/// bytes tells the cases apart.
package struct TokenMarker: Sendable {
    /// Bytes of tokens reported with empty events, which the next event's text must start with.
    private var owed: [UInt8] = []

    package init() {}

    /// The mark for an event with `text` (its new text) and the token reported with it (`nil`: none).
    package mutating func mark(text: [UInt8], token: (id: Int32, bytes: [UInt8])?) -> TokenMark? {
        guard let token else {
            owed = []
            return text.isEmpty ? nil : TokenMark(token: nil, kind: .gap)
        }
        if text.isEmpty {
            owed += token.bytes
            return TokenMark(token: token.id, kind: .held)
        }
        defer { owed = [] }
        return TokenMark(token: token.id, kind: text == owed + token.bytes ? .clean : .gap)
    }
}

/// The gateway's side: what a stream has produced so far, as llama-server takes it back in a prompt (token ids, with
/// text where the ids are unknown), in bounded memory.
package struct Generation: Sendable, Equatable {
    enum Segment: Sendable, Equatable {
        case tokens([Int32])
        case text(String)
    }

    private(set) var segments: [Segment] = []
    /// Tokens of `held` events not yet followed by a clean one: the client has not seen their text.
    private var held: [Int32] = []
    /// Generated tokens the client has seen, counting a gap as one (the engine's count comes with its usage).
    package private(set) var tokens = 0
    /// The bytes kept, bounded by `limit`.
    package private(set) var size = 0
    /// Set when the record outgrew `limit` or the stream carried a mark it could not use: no continuation then.
    package private(set) var abandoned = false
    let limit: Int

    /// Four bytes per token id, and the text of gap events; at 1 MiB a stream is not continued.
    package static let defaultLimit = 1 << 20

    package init(limit: Int = Generation.defaultLimit) {
        self.limit = limit
    }

    /// Takes an event's mark; `text` is asked for only for a gap (it decodes the event).
    package mutating func observe(_ mark: TokenMark, text: () -> String?) {
        guard !abandoned else { return }
        switch mark.kind {
        case .held:
            guard let token = mark.token else { return abandon() }
            held.append(token)
        case .clean:
            guard let token = mark.token else { return abandon() }
            append(tokens: held + [token])
            held = []
        case .gap:
            held = []
            guard let text = text() else { return abandon() }
            append(text: text)
        }
        if size > limit { abandon() }
    }

    private mutating func append(tokens new: [Int32]) {
        tokens += new.count
        size += 4 * new.count
        // Taken out and put back, so the array is extended in place rather than copied for every token.
        if case .tokens(var earlier)? = segments.last {
            segments.removeLast()
            earlier += new
            segments.append(.tokens(earlier))
        } else {
            segments.append(.tokens(new))
        }
    }

    private mutating func append(text new: String) {
        tokens += 1
        size += new.utf8.count
        if case .text(var earlier)? = segments.last {
            segments.removeLast()
            earlier += new
            segments.append(.text(earlier))
        } else {
            segments.append(.text(new))
        }
    }

    private mutating func abandon() {
        abandoned = true
        segments = []
        held = []
    }

    /// The ids of the answer from its start to its first gap (all of it when it has none): what a spot check scores,
    /// as the model's tokens in order. Tokens held at the end (the one that ended the answer, which has no text) are
    /// not part of it. `nil` when the record was abandoned.
    package var claimedTokens: [Int32]? {
        guard !abandoned else { return nil }
        if case .tokens(let ids)? = segments.first { return ids }
        return []
    }

    /// What a spot check scores of the answer: its ids up to its first gap, or, when it reported no ids at all (an
    /// owner's own server reports text only), its text. `nil` when the record was abandoned.
    package var spotCheckClaim: SpotCheck.Claim? {
        guard !abandoned else { return nil }
        if segments.count == 1, case .text(let text) = segments[0], held.isEmpty { return .text(text) }
        return claimedTokens.map { .tokens($0) }
    }

    /// Every token id the answer reported, gaps skipped: what the model's vocabulary must contain.
    package var reportedTokens: [Int32] {
        segments.flatMap { segment -> [Int32] in
            if case .tokens(let ids) = segment { return ids }
            return []
        }
    }

    /// The segments as llama-server's mixed prompt array: token ids as numbers, text as strings.
    package var promptPieces: [JSONValue] {
        segments.flatMap { segment -> [JSONValue] in
            switch segment {
            case .tokens(let ids): ids.map { .integer(Int64($0)) }
            case .text(let text): [.string(text)]
            }
        }
    }
}

/// What the gateway sends a node to continue a stream, as `Continuation.field` of the original request's body.
package struct ContinuationRequest: Codable, Sendable, Equatable {
    /// What the earlier nodes generated, as `Generation.promptPieces`.
    package var generated: [JSONValue]
    /// The `id` and `created` of the stream the client has, which the continued events carry too.
    package var id: String
    package var created: Int64

    package init(generated: [JSONValue], id: String, created: Int64) {
        self.generated = generated
        self.id = id
        self.created = created
    }

    /// Reads one from a request body, checking its shape: pieces are token ids (0 ... Int32.max) and strings.
    package init?(_ value: JSONValue?) {
        guard let value, let id = value["id"]?.stringValue, let created = value["created"]?.integerValue,
            let generated = value["generated"]?.arrayValue
        else { return nil }
        for piece in generated {
            switch piece {
            case .string: continue
            case .integer(let token) where token >= 0 && token <= Int64(Int32.max): continue
            default: return nil
            }
        }
        self.init(generated: generated, id: id, created: created)
    }

    package var json: JSONValue {
        ["generated": .array(generated), "id": .string(id), "created": .integer(created)]
    }
}
