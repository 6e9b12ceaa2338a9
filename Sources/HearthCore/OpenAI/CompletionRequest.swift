/// Which OpenAI endpoint a request body is for.
package enum CompletionEndpoint: String, Sendable, Hashable {
    case chat = "/v1/chat/completions"
    case text = "/v1/completions"
    /// Vectors, not text: checked by `EmbeddingRequest`, answered whole, routed only to engines started for them.
    case embeddings = "/v1/embeddings"
}

/// A checked OpenAI request body, ready to forward to a node.
///
/// Hearth reads the fields it must act on (model, streaming, limits) and passes every other field through unchanged,
/// so that whatever llama-server honours keeps working.
package struct CompletionRequest: Sendable, Equatable {
    var endpoint: CompletionEndpoint
    package var model: ModelID
    package var stream: Bool
    /// The client asked for a final usage chunk on a stream (`stream_options.include_usage`).
    package var clientWantsUsage: Bool
    /// The generation limit Hearth enforces (the client's, or the gateway's ceiling when it sent none).
    package var maxTokens: Int
    /// The body to send upstream: usage is always requested on streams so Hearth can meter real token counts.
    package var upstreamBody: JSONValue
}

/// Limits the gateway applies to every request.
package struct RequestLimits: Sendable, Equatable {
    /// The largest `max_tokens` a client may ask for; also the value used when a client sends none.
    package var maxTokensCeiling: Int

    package init(maxTokensCeiling: Int = 4096) {
        self.maxTokensCeiling = maxTokensCeiling
    }
}

extension CompletionRequest {
    /// Checks an OpenAI request body and prepares the body to forward.
    /// - Throws: `APIFailure` with kind `.invalidRequest` naming the offending field.
    package init(endpoint: CompletionEndpoint, body: JSONValue, limits: RequestLimits) throws(APIFailure) {
        guard case .object = body else {
            throw APIFailure(.invalidRequest, "The request body must be a JSON object.")
        }
        guard let rawModel = body["model"] else {
            throw APIFailure(.invalidRequest, "You must provide a model parameter.", param: "model", code: "missing_required_parameter")
        }
        guard let modelName = rawModel.stringValue, let model = ModelID(modelName) else {
            throw APIFailure(.invalidRequest, "'model' must be a non-empty string without spaces.", param: "model", code: "invalid_type")
        }
        var upstream = body
        switch endpoint {
        case .chat: try Self.checkMessages(body["messages"])
        case .text: try Self.checkPrompt(body["prompt"])
        case .embeddings: throw APIFailure(.invalidRequest, "Embeddings are asked at /v1/embeddings with 'input'.", code: "wrong_endpoint")
        }
        let stream = try Self.optionalBool(body, "stream") ?? false
        var clientWantsUsage = false
        if let options = body["stream_options"], options != .null {
            guard case .object = options else {
                throw APIFailure(.invalidRequest, "'stream_options' must be an object.", param: "stream_options", code: "invalid_type")
            }
            clientWantsUsage = try Self.optionalBool(options, "include_usage", param: "stream_options.include_usage") ?? false
        }
        let maxTokens = try Self.maxTokens(body, limits: limits)
        try Self.checkSampling(body)
        try Self.checkTools(body)
        try Self.checkResponseFormat(body["response_format"])

        // Only the gateway continues a stream on another node (see `Continuation`).
        upstream[Continuation.field] = nil
        upstream["max_tokens"] = .integer(Int64(maxTokens))
        upstream["max_completion_tokens"] = nil
        if stream {
            upstream["stream"] = true
            upstream["stream_options"] = ["include_usage": true]
            // The prompt's size from the first token on, so a stream the client cuts short is charged for it.
            upstream[EngineTimings.requestField] = true
        }
        self.init(
            endpoint: endpoint,
            model: model,
            stream: stream,
            clientWantsUsage: stream && clientWantsUsage,
            maxTokens: maxTokens,
            upstreamBody: removingNulls(upstream)
        )
    }

    private static func checkMessages(_ value: JSONValue?) throws(APIFailure) {
        guard let value else {
            throw APIFailure(.invalidRequest, "You must provide 'messages'.", param: "messages", code: "missing_required_parameter")
        }
        guard let messages = value.arrayValue else {
            throw APIFailure(.invalidRequest, "'messages' must be an array.", param: "messages", code: "invalid_type")
        }
        guard !messages.isEmpty else {
            throw APIFailure(.invalidRequest, "'messages' must contain at least one message.", param: "messages", code: "empty_array")
        }
        for (index, message) in messages.enumerated() {
            guard let role = message["role"]?.stringValue else {
                throw APIFailure(
                    .invalidRequest,
                    "messages[\(index)] must be an object with a string 'role'.",
                    param: "messages[\(index)].role",
                    code: "invalid_type"
                )
            }
            guard ["system", "user", "assistant", "tool", "developer", "function"].contains(role) else {
                throw APIFailure(
                    .invalidRequest,
                    "messages[\(index)].role '\(role)' is not one of system, user, assistant, tool, developer.",
                    param: "messages[\(index)].role",
                    code: "invalid_value"
                )
            }
            try checkContent(message["content"], at: "messages[\(index)].content")
        }
    }

    /// A message's content: a string, `null` (an assistant turn that only calls tools), or an array of text parts.
    /// The catalog's models read text only, so image, audio and file parts are refused here rather than by an engine
    /// (which would fail the request as a server error, and count against an honest node).
    private static func checkContent(_ value: JSONValue?, at param: String) throws(APIFailure) {
        switch value {
        case .none, .null?, .string?: return
        case .array(let parts)?:
            for (index, part) in parts.enumerated() {
                let partParam = "\(param)[\(index)]"
                guard let type = part["type"]?.stringValue else {
                    throw APIFailure(.invalidRequest, "\(partParam) must be an object with a string 'type'.", param: partParam, code: "invalid_type")
                }
                switch type {
                case "text":
                    guard part["text"]?.stringValue != nil else {
                        throw APIFailure(.invalidRequest, "\(partParam).text must be a string.", param: "\(partParam).text", code: "invalid_type")
                    }
                case "refusal":
                    // An assistant turn the model declined, as OpenAI returns it.
                    guard part["refusal"]?.stringValue != nil else {
                        throw APIFailure(
                            .invalidRequest,
                            "\(partParam).refusal must be a string.",
                            param: "\(partParam).refusal",
                            code: "invalid_type"
                        )
                    }
                case "image_url", "input_audio", "file", "image", "audio":
                    throw APIFailure(
                        .invalidRequest,
                        "\(partParam) is a '\(type)' part, but the models on this network read text only.",
                        param: partParam,
                        code: "unsupported_content"
                    )
                default:
                    throw APIFailure(
                        .invalidRequest,
                        "\(partParam).type '\(type)' is not a content part type.",
                        param: "\(partParam).type",
                        code: "invalid_value"
                    )
                }
            }
        default:
            throw APIFailure(.invalidRequest, "\(param) must be a string or an array of content parts.", param: param, code: "invalid_type")
        }
    }

    /// `tools` (functions the model may call) and `tool_choice`, in OpenAI's shape.
    private static func checkTools(_ body: JSONValue) throws(APIFailure) {
        if let tools = body["tools"], tools != .null {
            guard let list = tools.arrayValue else {
                throw APIFailure(.invalidRequest, "'tools' must be an array of tools.", param: "tools", code: "invalid_type")
            }
            for (index, tool) in list.enumerated() {
                let param = "tools[\(index)]"
                guard tool["type"]?.stringValue == "function" else {
                    throw APIFailure(.invalidRequest, "\(param).type must be 'function'.", param: "\(param).type", code: "invalid_value")
                }
                guard case .object = tool["function"] else {
                    throw APIFailure(
                        .invalidRequest,
                        "\(param).function must be an object.",
                        param: "\(param).function",
                        code: "missing_required_parameter"
                    )
                }
                guard let name = tool["function"]?["name"]?.stringValue, !name.isEmpty else {
                    throw APIFailure(
                        .invalidRequest,
                        "\(param).function.name must be a non-empty string.",
                        param: "\(param).function.name",
                        code: "invalid_value"
                    )
                }
                if let parameters = tool["function"]?["parameters"], parameters != .null {
                    guard case .object = parameters else {
                        throw APIFailure(
                            .invalidRequest,
                            "\(param).function.parameters must be a JSON Schema object.",
                            param: "\(param).function.parameters",
                            code: "invalid_type"
                        )
                    }
                }
            }
        }
        switch body["tool_choice"] {
        case .none, .null?: return
        case .string(let choice)? where ["none", "auto", "required"].contains(choice): return
        case .object? where body["tool_choice"]?["type"]?.stringValue == "function" && body["tool_choice"]?["function"]?["name"]?.stringValue != nil:
            return
        default:
            throw APIFailure(
                .invalidRequest,
                "'tool_choice' must be 'none', 'auto', 'required' or {\"type\":\"function\",\"function\":{\"name\":…}}.",
                param: "tool_choice",
                code: "invalid_value"
            )
        }
    }

    /// `response_format`: plain text, any JSON object, or JSON following a schema.
    private static func checkResponseFormat(_ value: JSONValue?) throws(APIFailure) {
        guard let value, value != .null else { return }
        switch value["type"]?.stringValue {
        case "text"?, "json_object"?: return
        case "json_schema"?:
            guard case .object = value["json_schema"]?["schema"] else {
                throw APIFailure(
                    .invalidRequest,
                    "'response_format.json_schema.schema' must be a JSON Schema object.",
                    param: "response_format.json_schema.schema",
                    code: "invalid_type"
                )
            }
        default:
            throw APIFailure(
                .invalidRequest,
                "'response_format' must be an object whose 'type' is 'text', 'json_object' or 'json_schema'.",
                param: "response_format",
                code: "invalid_value"
            )
        }
    }

    private static func checkPrompt(_ value: JSONValue?) throws(APIFailure) {
        switch value {
        case .none:
            throw APIFailure(.invalidRequest, "You must provide 'prompt'.", param: "prompt", code: "missing_required_parameter")
        case .string?: return
        case .array(let items)? where !items.isEmpty: return
        default:
            throw APIFailure(.invalidRequest, "'prompt' must be a string or a non-empty array.", param: "prompt", code: "invalid_type")
        }
    }

    private static func maxTokens(_ body: JSONValue, limits: RequestLimits) throws(APIFailure) -> Int {
        var requested: Int?
        for key in ["max_completion_tokens", "max_tokens"] {
            guard let value = body[key], value != .null else { continue }
            guard let number = value.integerValue, number >= 1 else {
                throw APIFailure(.invalidRequest, "'\(key)' must be a positive integer.", param: key, code: "invalid_value")
            }
            guard number <= limits.maxTokensCeiling else {
                throw APIFailure(
                    .invalidRequest,
                    "'\(key)' is \(number), above this gateway's limit of \(limits.maxTokensCeiling) tokens.",
                    param: key,
                    code: "invalid_value"
                )
            }
            requested = requested ?? Int(number)
        }
        return requested ?? limits.maxTokensCeiling
    }

    private static func checkSampling(_ body: JSONValue) throws(APIFailure) {
        try checkNumber(body, "temperature", in: 0...2)
        try checkNumber(body, "top_p", in: 0...1)
        try checkNumber(body, "presence_penalty", in: -2...2)
        try checkNumber(body, "frequency_penalty", in: -2...2)
        if let seed = body["seed"], seed != .null, seed.integerValue == nil {
            throw APIFailure(.invalidRequest, "'seed' must be an integer.", param: "seed", code: "invalid_type")
        }
        if let n = body["n"], n != .null, n.integerValue != 1 {
            throw APIFailure(.invalidRequest, "Only n = 1 is supported.", param: "n", code: "invalid_value")
        }
        switch body["stop"] {
        case .none, .null?, .string?: break
        case .array(let items)? where items.count <= 4 && items.allSatisfy({ $0.stringValue != nil }): break
        default:
            throw APIFailure(.invalidRequest, "'stop' must be a string or an array of up to 4 strings.", param: "stop", code: "invalid_type")
        }
    }

    private static func checkNumber(_ body: JSONValue, _ key: String, in range: ClosedRange<Double>) throws(APIFailure) {
        guard let value = body[key], value != .null else { return }
        guard let number = value.doubleValue, range.contains(number) else {
            throw APIFailure(
                .invalidRequest,
                "'\(key)' must be a number from \(range.lowerBound) to \(range.upperBound).",
                param: key,
                code: "invalid_value"
            )
        }
    }

    private static func optionalBool(_ object: JSONValue, _ key: String, param: String? = nil) throws(APIFailure) -> Bool? {
        switch object[key] {
        case .none, .null?: return nil
        case .bool(let value)?: return value
        default: throw APIFailure(.invalidRequest, "'\(param ?? key)' must be a boolean.", param: param ?? key, code: "invalid_type")
        }
    }
}

/// Drops top-level members whose value is `null`, which llama-server may treat differently from a missing one.
private func removingNulls(_ value: JSONValue) -> JSONValue {
    guard case .object(let members) = value else { return value }
    return .object(members.filter { $0.value != .null })
}
