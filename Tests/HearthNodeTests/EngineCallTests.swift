import NIOCore
import Testing

@testable import HearthCore
@testable import HearthNode

/// What a node asks its managed engine for a stream: the sampled token's id with every event, taken after sampling
/// where that is cheap for the engine, and the client's own log-probabilities left as the client asked.
struct EngineCallTests {
    static func sent(_ body: JSONValue, path: String = "/v1/chat/completions") async throws -> JSONValue {
        // No continuation: the call is made without asking the engine anything, so no engine listens on the port.
        let call = try await EngineCall.stream(path: path, body: body, port: 1)
        return try JSONValue.parse(call.body.readableBytesView)
    }

    static let chat: JSONValue = ["model": "m", "stream": true, "messages": [["role": "user", "content": "hi"]]]

    @Test func aStreamAsksForTheSampledTokenAfterSampling() async throws {
        let sent = try await Self.sent(Self.chat)
        #expect(sent["logprobs"] == true && sent["top_logprobs"] == 1)
        #expect(sent["post_sampling_probs"] == true)

        let text = try await Self.sent(["model": "m", "stream": true, "prompt": "hi"], path: "/v1/completions")
        #expect(text["logprobs"] == 1 && text["post_sampling_probs"] == true)

        var bounded = Self.chat
        bounded["top_k"] = 1000
        #expect(try await Self.sent(bounded)["post_sampling_probs"] == true)
        bounded["mirostat"] = 0
        #expect(try await Self.sent(bounded)["post_sampling_probs"] == true)
    }

    /// With top-k turned off or above 1,000, a sampler chain of the client's own or mirostat, the candidates after
    /// sampling may be the whole vocabulary, and llama-server would sort them all for every token: the id is read
    /// before sampling then.
    @Test(
        arguments: [
            ("top_k", JSONValue.integer(0)), ("top_k", .integer(-1)), ("top_k", .integer(1001)), ("top_k", .string("40")),
            ("samplers", ["top_p", "temperature"]), ("mirostat", .integer(2)),
        ] as [(String, JSONValue)]
    )
    func requestsThatMayLeaveTheWholeVocabularyReadTheIDBeforeSampling(member: String, value: JSONValue) async throws {
        var body = Self.chat
        body[member] = value
        let sent = try await Self.sent(body)
        #expect(sent["logprobs"] == true && sent["top_logprobs"] == 1, "the id is still asked for")
        #expect(sent["post_sampling_probs"] == nil)
    }

    /// Ids serve only a continuation: a stream that can never be continued is not asked for them (and llama-server
    /// refuses log-probabilities in a stream that offers tools: every streamed tool call failed with 400).
    @Test func aStreamThatCanNeverBeContinuedIsNotAskedForTokenIDs() async throws {
        var tooled = Self.chat
        tooled["tools"] = [["type": "function", "function": ["name": "get_weather", "parameters": ["type": "object"]]]]
        var formatted = Self.chat
        formatted["response_format"] = ["type": "json_object"]
        var several = Self.chat
        several["n"] = 2
        for body in [tooled, formatted, several] {
            let sent = try await Self.sent(body)
            #expect(sent["logprobs"] == nil && sent["top_logprobs"] == nil && sent["post_sampling_probs"] == nil, "\(sent)")
        }
        // An empty tool list offers nothing: that stream can be continued, and is asked as any.
        var none = Self.chat
        none["tools"] = []
        #expect(try await Self.sent(none)["logprobs"] == true)
    }

    @Test func aClientsOwnLogprobsAreLeftAsItAskedForThem() async throws {
        var body = Self.chat
        body["logprobs"] = true
        body["top_logprobs"] = 3
        let sent = try await Self.sent(body)
        #expect(sent["top_logprobs"] == 3)
        #expect(sent["post_sampling_probs"] == nil, "its log-probabilities are the vocabulary's, as OpenAI's are")
    }
}
