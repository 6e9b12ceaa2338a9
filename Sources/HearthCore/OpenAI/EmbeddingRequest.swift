/// A checked `POST /v1/embeddings` body (OpenAI's shape), and the translations for Ollama's `/api/embed` and
/// `/api/embeddings`.
///
/// The body goes to the engine unchanged but for what Hearth must decide: the model, and inputs a client could use to
/// make a node work without bound (their number; their size is bounded by the gateway's body limit).
package struct EmbeddingRequest: Sendable, Equatable {
    package var model: ModelID
    /// How many inputs the request embeds.
    var inputs: Int
    package var upstreamBody: JSONValue
    /// Ollama's `dimensions` (`/api/embed`): each vector is cut to its first this many numbers and made unit length
    /// again, as Ollama does (`ollamaAnswer`). OpenAI's own is refused.
    package var ollamaDimensions: Int?

    /// At most this many inputs per request (OpenAI's own limit is 2048; a volunteer's CPU is slower).
    package static let maxInputs = 256

    package init(body: JSONValue) throws(APIFailure) {
        guard case .object = body else { throw APIFailure(.invalidRequest, "The request body must be a JSON object.") }
        guard let rawModel = body["model"] else {
            throw APIFailure(.invalidRequest, "You must provide a model parameter.", param: "model", code: "missing_required_parameter")
        }
        guard let name = rawModel.stringValue, let model = ModelID(name) else {
            throw APIFailure(.invalidRequest, "'model' must be a non-empty string without spaces.", param: "model", code: "invalid_type")
        }
        self.model = model
        self.inputs = try Self.count(body["input"], param: "input")
        if let format = body["encoding_format"], format != .null {
            guard format == "float" || format == "base64" else {
                throw APIFailure(.invalidRequest, "'encoding_format' must be 'float' or 'base64'.", param: "encoding_format", code: "invalid_value")
            }
        }
        if let dimensions = body["dimensions"], dimensions != .null {
            throw APIFailure(
                .invalidRequest,
                "'dimensions' is not supported: the model's embeddings have the size it was trained with.",
                param: "dimensions",
                code: "unsupported_parameter"
            )
        }
        upstreamBody = body
    }

    /// The number of inputs in OpenAI's `input`: a string, an array of strings, an array of token ids, or an array of
    /// arrays of token ids; none empty.
    static func count(_ input: JSONValue?, param: String) throws(APIFailure) -> Int {
        let empty = APIFailure(.invalidRequest, "'\(param)' must not be empty.", param: param, code: "invalid_value")
        switch input {
        case nil, .null?:
            throw APIFailure(.invalidRequest, "You must provide '\(param)'.", param: param, code: "missing_required_parameter")
        case .string(let text)?:
            guard !text.isEmpty else { throw empty }
            return 1
        case .array(let items)?:
            guard !items.isEmpty else { throw empty }
            // Token ids alone are one input.
            if items.allSatisfy({ $0.integerValue.map { $0 >= 0 } ?? false }) { return 1 }
            guard items.count <= maxInputs else {
                throw APIFailure(
                    .invalidRequest,
                    "At most \(maxInputs) inputs per request; this one has \(items.count).",
                    param: param,
                    code: "too_many_inputs"
                )
            }
            for item in items {
                switch item {
                case .string(let text): guard !text.isEmpty else { throw empty }
                case .array(let tokens):
                    guard !tokens.isEmpty, tokens.allSatisfy({ $0.integerValue.map { $0 >= 0 } ?? false }) else {
                        throw APIFailure(.invalidRequest, "Token inputs must be non-empty arrays of token ids.", param: param, code: "invalid_value")
                    }
                default:
                    throw APIFailure(.invalidRequest, "'\(param)' must hold strings or arrays of token ids.", param: param, code: "invalid_type")
                }
            }
            return items.count
        default:
            throw APIFailure(.invalidRequest, "'\(param)' must be a string or an array.", param: param, code: "invalid_type")
        }
    }

    /// Ollama's `/api/embed` (`input`: a string or strings) or the older `/api/embeddings` (`prompt`: one string)
    /// as an OpenAI body. Ollama's `options`, `keep_alive` and `truncate` have no meaning on a network and are dropped;
    /// its `dimensions` is applied to the answer (`ollamaDimensions`).
    package static func fromOllama(_ body: JSONValue, legacy: Bool) throws(APIFailure) -> EmbeddingRequest {
        guard case .object = body else { throw APIFailure(.invalidRequest, "The request body must be a JSON object.") }
        let field = legacy ? "prompt" : "input"
        guard let input = body[field] else {
            throw APIFailure(.invalidRequest, "You must provide '\(field)'.", param: field, code: "missing_required_parameter")
        }
        if legacy, input.stringValue == nil {
            throw APIFailure(.invalidRequest, "'prompt' must be a string.", param: "prompt", code: "invalid_type")
        }
        var openAI: JSONValue = ["input": input]
        if let model = body["model"] { openAI["model"] = model }
        var dimensions: Int?
        if !legacy, let value = body["dimensions"], value != .null {
            guard let count = value.integerValue else {
                throw APIFailure(.invalidRequest, "'dimensions' must be an integer.", param: "dimensions", code: "invalid_type")
            }
            // Ollama leaves the vectors whole for a count of zero or less.
            if count > 0 { dimensions = Int(clamping: count) }
        }
        var request = try EmbeddingRequest(body: openAI)
        request.ollamaDimensions = dimensions
        return request
    }

    /// The model of an Ollama embedding request with nothing to embed (no input, an empty text, an empty list), which
    /// Ollama answers by loading the model and returning no vectors (`ollamaEmptyAnswer`); `nil` for any other.
    package static func ollamaModelToLoad(_ body: JSONValue, legacy: Bool) -> ModelID? {
        guard case .object = body, let name = body["model"]?.stringValue, let model = ModelID(name) else { return nil }
        switch body[legacy ? "prompt" : "input"] {
        case nil, .null?: return model
        case .string(let text)?: return text.isEmpty ? model : nil
        case .array(let items)?: return !legacy && items.isEmpty ? model : nil
        default: return nil
        }
    }

    /// Ollama's answer to a request with nothing to embed, naming the model as the client did.
    package static func ollamaEmptyAnswer(model: String, legacy: Bool) -> JSONValue {
        legacy ? ["embedding": []] : ["model": .string(model), "embeddings": []]
    }

    /// An OpenAI embeddings answer in Ollama's shape: `{model, embeddings: [[…]], prompt_eval_count}` for `/api/embed`,
    /// `{embedding: […]}` for `/api/embeddings`; `nil` when the answer is not one.
    /// `dimensions` cuts each vector and makes it unit length again (Ollama's `dimensions`).
    package static func ollamaAnswer(
        _ answer: JSONValue,
        model: ModelID,
        legacy: Bool,
        durationNanoseconds: Int64,
        dimensions: Int? = nil
    ) -> JSONValue? {
        guard let data = answer["data"]?.arrayValue else { return nil }
        var vectors: [JSONValue] = []
        for item in data {
            guard case .array(let numbers)? = item["embedding"] else { return nil }
            guard let dimensions, dimensions < numbers.count else {
                vectors.append(.array(numbers))
                continue
            }
            guard let cut = unitLength(numbers.prefix(dimensions)) else { return nil }
            vectors.append(cut)
        }
        if legacy { return ["embedding": vectors.first ?? .array([])] }
        return [
            "model": .string(model.rawValue), "embeddings": .array(vectors),
            "total_duration": .integer(durationNanoseconds), "load_duration": 0,
            "prompt_eval_count": .integer(Int64(answer["usage"]?["prompt_tokens"]?.integerValue ?? 0)),
        ]
    }
}

extension EmbeddingRequest {
    /// `numbers` scaled to unit length (a zero vector stays zero, as Ollama leaves it); `nil` when one is no finite
    /// number.
    static func unitLength(_ numbers: ArraySlice<JSONValue>) -> JSONValue? {
        var values: [Double] = []
        values.reserveCapacity(numbers.count)
        for number in numbers {
            guard let value = number.doubleValue, value.isFinite else { return nil }
            values.append(value)
        }
        let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let scale = 1 / max(norm, 1e-12)
        return .array(values.map { .number($0 * scale) })
    }
}

extension TokenUsage {
    /// The usage of an embeddings answer (`{"usage": {"prompt_tokens": N, …}}`): N prompt tokens and no completion.
    package static func embedding(in answer: JSONValue) -> TokenUsage? {
        guard let prompt = answer["usage"]?["prompt_tokens"]?.integerValue, prompt >= 0, prompt <= Int64(Int32.max) else { return nil }
        return TokenUsage(promptTokens: Int(prompt), completionTokens: 0)
    }
}
