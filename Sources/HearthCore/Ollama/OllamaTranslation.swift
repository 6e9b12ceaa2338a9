/// Translates Ollama's `/api/chat` and `/api/generate` requests into OpenAI chat requests.
///
/// Ollama clients (Open WebUI, Continue, the `ollama` libraries) then reach the same nodes as OpenAI clients.
package enum OllamaTranslation {
    /// Option names in Ollama's `options` and the OpenAI / llama-server field each becomes.
    static let optionNames: [(ollama: String, openAI: String)] = [
        ("num_predict", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
        ("min_p", "min_p"), ("seed", "seed"), ("stop", "stop"), ("repeat_penalty", "repeat_penalty"),
        ("presence_penalty", "presence_penalty"), ("frequency_penalty", "frequency_penalty"),
    ]

    /// A failure of the OpenAI request an Ollama body became, in the Ollama body's words: a bad `options.num_predict`
    /// is named so, not as the `max_tokens` it was translated to, which the client never sent.
    package static func restated(_ failure: APIFailure, for body: JSONValue) -> APIFailure {
        guard let param = failure.param, let (ollama, openAI) = optionNames.first(where: { $0.openAI == param }),
            body["options"]?[ollama] != nil
        else { return failure }
        var restated = failure
        restated.message = failure.message.replacing("'\(openAI)'", with: "'options.\(ollama)'")
        restated.param = "options.\(ollama)"
        return restated
    }

    /// Whether an Ollama request streams: Ollama streams unless `stream` is `false`.
    package static func wantsStream(_ body: JSONValue) throws(APIFailure) -> Bool {
        try flag("stream", of: body, absent: true)
    }

    /// Whether an `/api/generate` body asks for its prompt as it is (`raw`: no chat template, no system text).
    package static func isRaw(_ body: JSONValue) throws(APIFailure) -> Bool {
        try flag("raw", of: body, absent: false)
    }

    /// A boolean member, `absent` when it is missing or null.
    private static func flag(_ name: String, of body: JSONValue, absent: Bool) throws(APIFailure) -> Bool {
        switch body[name] {
        case .none, .null?: return absent
        case .bool(let value)?: return value
        default: throw APIFailure(.invalidRequest, "'\(name)' must be a boolean.", param: name, code: "invalid_type")
        }
    }

    /// The OpenAI chat body for an Ollama `/api/chat` body.
    package static func chatBody(fromChat body: JSONValue) throws(APIFailure) -> JSONValue {
        guard case .object = body else { throw APIFailure(.invalidRequest, "The request body must be a JSON object.") }
        guard let messages = body["messages"]?.arrayValue else {
            throw APIFailure(.invalidRequest, "'messages' must be an array.", param: "messages", code: "invalid_type")
        }
        var openAIMessages: [JSONValue] = []
        for (index, message) in messages.enumerated() {
            guard let role = message["role"]?.stringValue else {
                throw APIFailure(.invalidRequest, "messages[\(index)] needs a string 'role'.", param: "messages[\(index)].role")
            }
            let content: String
            switch message["content"] {
            case .none, .null?: content = ""
            case .string(let text)?: content = text
            default:
                throw APIFailure(
                    .invalidRequest,
                    "messages[\(index)].content must be a string.",
                    param: "messages[\(index)].content",
                    code: "invalid_type"
                )
            }
            try refuseImages(message["images"], at: "messages[\(index)].images")
            var converted: JSONValue = ["role": .string(role), "content": .string(content)]
            converted["tool_calls"] = message["tool_calls"]
            converted["tool_call_id"] = message["tool_call_id"]
            openAIMessages.append(converted)
        }
        var result = try commonBody(body, messages: try OllamaToolCalls.openAIMessages(openAIMessages))
        // Ollama's tools are OpenAI's (checked as such by `CompletionRequest`).
        if let tools = body["tools"], tools != .null, tools != .array([]) { result["tools"] = tools }
        return result
    }

    /// Ollama's `images` (base64 pictures for vision models): the catalog's models read text only, so a request with
    /// images is refused rather than answered as if they were not there.
    private static func refuseImages(_ images: JSONValue?, at param: String) throws(APIFailure) {
        switch images {
        case .none, .null?: return
        case .array(let list)? where list.isEmpty: return
        default:
            throw APIFailure(
                .invalidRequest,
                "'\(param)' were sent, but the models on this network read text only.",
                param: param,
                code: "unsupported_content"
            )
        }
    }

    /// The OpenAI chat body for an Ollama `/api/generate` body (a system text and one user prompt).
    package static func chatBody(fromGenerate body: JSONValue) throws(APIFailure) -> JSONValue {
        let prompt = try generatePrompt(body)
        var messages: [JSONValue] = []
        if let system = body["system"]?.stringValue, !system.isEmpty {
            messages.append(["role": "system", "content": .string(system)])
        }
        messages.append(["role": "user", "content": .string(prompt)])
        return try commonBody(body, messages: messages)
    }

    /// The OpenAI text-completion body for a `raw` `/api/generate` body: the prompt goes to the model as it is, as
    /// Ollama sends a raw prompt past the model's template.
    package static func completionBody(fromRawGenerate body: JSONValue) throws(APIFailure) -> JSONValue {
        let prompt = try generatePrompt(body)
        var result = try commonBody(body, messages: [])
        result["messages"] = nil
        result["prompt"] = .string(prompt)
        return result
    }

    /// An `/api/generate` body's prompt, from a JSON object that sends no images.
    private static func generatePrompt(_ body: JSONValue) throws(APIFailure) -> String {
        guard case .object = body else { throw APIFailure(.invalidRequest, "The request body must be a JSON object.") }
        guard let prompt = body["prompt"]?.stringValue else {
            throw APIFailure(.invalidRequest, "'prompt' must be a string.", param: "prompt", code: "invalid_type")
        }
        try refuseImages(body["images"], at: "images")
        // A text to fill in before (code completion's fill-in-the-middle): Ollama refuses it for a model without the
        // insert capability, and no model on a Hearth network is served with it. Dropped, the model would write on
        // past the cursor as if nothing followed.
        if let suffix = body["suffix"], suffix != .null, suffix != "" {
            throw APIFailure(
                .invalidRequest,
                "'suffix' was sent, but the models on this network do not fill in the middle (none has Ollama's insert capability).",
                param: "suffix",
                code: "unsupported_parameter"
            )
        }
        // The token ids of an earlier exchange, which Ollama puts before the prompt (deprecated there in favour of
        // /api/chat). Hearth's answers carry none to send back; dropped, the model would answer as if nothing had been
        // said before.
        if let context = body["context"], context != .null, context.arrayValue?.isEmpty != true {
            throw APIFailure(
                .invalidRequest,
                "'context' (the token ids of an earlier /api/generate exchange) is not supported: send the conversation to /api/chat as messages.",
                param: "context",
                code: "unsupported_parameter"
            )
        }
        return prompt
    }

    private static func commonBody(_ body: JSONValue, messages: [JSONValue]) throws(APIFailure) -> JSONValue {
        var result: JSONValue = ["messages": .array(messages), "stream": .bool(try wantsStream(body))]
        result["model"] = body["model"] ?? body["name"]
        if let options = body["options"], options != .null {
            guard case .object = options else {
                throw APIFailure(.invalidRequest, "'options' must be an object.", param: "options", code: "invalid_type")
            }
            for (ollama, openAI) in optionNames {
                if let value = options[ollama], value != .null {
                    // Ollama's num_predict of -1 or -2 means "no limit": leave it to the gateway's ceiling.
                    if ollama == "num_predict", let number = value.integerValue, number < 0 { continue }
                    result[openAI] = value
                }
            }
        }
        // Ollama refuses `think` (true, or a level) for a model without its thinking capability, and no model on a
        // Hearth network is served with one: answered without, a client would wait for thoughts that never come.
        switch body["think"] {
        case nil, .null?, .bool(false)?: break
        default:
            throw APIFailure(
                .invalidRequest,
                "'think' was sent, but the models on this network do not think aloud (none has Ollama's thinking capability).",
                param: "think",
                code: "unsupported_parameter"
            )
        }
        switch body["format"] {
        case .string("json")?: result["response_format"] = ["type": "json_object"]
        case .object(let schema)?: result["response_format"] = ["type": "json_schema", "json_schema": ["schema": .object(schema)]]
        default: break
        }
        return result
    }
}

/// The statistics Ollama puts on the last line of a response.
package struct OllamaStatistics: Sendable, Equatable {
    var doneReason: String
    var promptTokens: Int
    var completionTokens: Int
    var totalNanoseconds: UInt64
    var promptNanoseconds: UInt64
    var evalNanoseconds: UInt64

    package init(
        doneReason: String,
        promptTokens: Int,
        completionTokens: Int,
        totalNanoseconds: UInt64,
        promptNanoseconds: UInt64,
        evalNanoseconds: UInt64
    ) {
        self.doneReason = doneReason
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.totalNanoseconds = totalNanoseconds
        self.promptNanoseconds = promptNanoseconds
        self.evalNanoseconds = evalNanoseconds
    }
}

/// Builds Ollama response objects, one per NDJSON line.
package struct OllamaResponseWriter: Sendable {
    package enum Shape: Sendable { case chat, generate }

    var shape: Shape
    var model: String
    var createdAt: String

    package init(shape: Shape, model: String, createdAt: String) {
        self.shape = shape
        self.model = model
        self.createdAt = createdAt
    }

    /// A line carrying generated text, with `done: false`.
    package func content(_ text: String) -> JSONValue {
        var line: JSONValue = ["model": .string(model), "created_at": .string(createdAt), "done": false]
        place(text, in: &line)
        return line
    }

    /// A line carrying the tool calls the model made (a chat's), with `done: false`, as Ollama streams them.
    package func toolCalls(_ calls: [JSONValue]) -> JSONValue {
        var line = content("")
        line["message"]?["tool_calls"] = .array(calls)
        return line
    }

    /// The final line, with `done: true` and Ollama's counters and durations (nanoseconds).
    /// - Parameters:
    ///   - text: the whole text, for a response that does not stream; empty on a stream.
    ///   - toolCalls: the tool calls, for a chat that does not stream.
    package func final(text: String, statistics: OllamaStatistics, toolCalls: [JSONValue] = []) -> JSONValue {
        var line: JSONValue = [
            "model": .string(model), "created_at": .string(createdAt), "done": true,
            "done_reason": .string(statistics.doneReason),
            "total_duration": .integer(Int64(clamping: statistics.totalNanoseconds)), "load_duration": 0,
            "prompt_eval_count": .integer(Int64(statistics.promptTokens)),
            "prompt_eval_duration": .integer(Int64(clamping: statistics.promptNanoseconds)),
            "eval_count": .integer(Int64(statistics.completionTokens)),
            "eval_duration": .integer(Int64(clamping: statistics.evalNanoseconds)),
        ]
        place(text, in: &line)
        if !toolCalls.isEmpty, shape == .chat { line["message"]?["tool_calls"] = .array(toolCalls) }
        return line
    }

    private func place(_ text: String, in line: inout JSONValue) {
        switch shape {
        case .chat: line["message"] = ["role": "assistant", "content": .string(text)]
        case .generate: line["response"] = .string(text)
        }
    }

    /// Maps an OpenAI `finish_reason` to Ollama's `done_reason`.
    package static func doneReason(fromFinishReason reason: String?) -> String {
        switch reason {
        case "length": "length"
        case nil: "stop"
        default: "stop"
        }
    }
}
