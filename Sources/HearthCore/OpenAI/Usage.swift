/// Token counts as the engine reports them in `usage`.
public struct TokenUsage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    public var totalTokens: Int { promptTokens + completionTokens }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case totalTokens = "total_tokens"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        promptTokens = try container.decode(Int.self, forKey: .promptTokens)
        completionTokens = try container.decode(Int.self, forKey: .completionTokens)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(promptTokens, forKey: .promptTokens)
        try container.encode(completionTokens, forKey: .completionTokens)
        try container.encode(totalTokens, forKey: .totalTokens)
    }
}

/// The parts of a streamed chunk (or a whole completion) that Hearth reads: text, finish reason and usage.
public struct CompletionChunk: Decodable, Sendable {
    public struct Choice: Decodable, Sendable {
        public struct Delta: Decodable, Sendable {
            public var content: String?
        }
        public var delta: Delta?
        public var message: Delta?
        public var text: String?
        public var finishReason: String?

        enum CodingKeys: String, CodingKey {
            case delta, message, text
            case finishReason = "finish_reason"
        }

        /// The new text of this choice, whichever endpoint produced it.
        public var content: String? { delta?.content ?? message?.content ?? text }
    }

    public var choices: [Choice]?
    public var usage: TokenUsage?
}
