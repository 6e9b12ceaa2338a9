import Testing

@testable import HearthCore

struct CompletionRequestTests {
    let limits = RequestLimits(maxTokensCeiling: 256)
    let valid: JSONValue = ["model": "tiny:q8_0", "messages": [["role": "user", "content": "hi"]]]

    func failure(_ body: JSONValue, _ endpoint: CompletionEndpoint = .chat) -> APIFailure? {
        do {
            _ = try CompletionRequest(endpoint: endpoint, body: body, limits: limits)
            return nil
        } catch {
            return error
        }
    }

    @Test func acceptsAMinimalChatAndAppliesTheCeilingAsDefaultLimit() throws {
        let request = try CompletionRequest(endpoint: .chat, body: valid, limits: limits)
        #expect(request.model.rawValue == "tiny:q8_0")
        #expect(request.stream == false)
        #expect(request.maxTokens == 256)
        #expect(request.upstreamBody["max_tokens"] == 256)
        #expect(request.upstreamBody["stream_options"] == nil)
    }

    @Test func alwaysAsksTheEngineForUsageOnStreamsButRemembersWhetherTheClientDid() throws {
        var body = valid
        body["stream"] = true
        let silent = try CompletionRequest(endpoint: .chat, body: body, limits: limits)
        #expect(silent.upstreamBody["stream_options"]?["include_usage"] == true)
        #expect(silent.clientWantsUsage == false)
        body["stream_options"] = ["include_usage": true]
        #expect(try CompletionRequest(endpoint: .chat, body: body, limits: limits).clientWantsUsage)
    }

    @Test func prefersMaxCompletionTokensAndForwardsOneLimit() throws {
        var body = valid
        body["max_completion_tokens"] = 10
        body["max_tokens"] = 20
        let request = try CompletionRequest(endpoint: .chat, body: body, limits: limits)
        #expect(request.maxTokens == 10)
        #expect(request.upstreamBody["max_tokens"] == 10)
        #expect(request.upstreamBody["max_completion_tokens"] == nil)
    }

    @Test func passesUnknownFieldsThrough() throws {
        var body = valid
        body["top_k"] = 40
        body["grammar"] = "root ::= \"a\""
        let request = try CompletionRequest(endpoint: .chat, body: body, limits: limits)
        #expect(request.upstreamBody["top_k"] == 40)
        #expect(request.upstreamBody["grammar"] == "root ::= \"a\"")
    }

    @Test func rejectsBadBodiesNamingTheField() {
        #expect(failure("just a string")?.kind == .invalidRequest)
        #expect(failure(["messages": [["role": "user", "content": "x"]]])?.param == "model")
        #expect(failure(["model": "", "messages": [["role": "user"]]])?.param == "model")
        #expect(failure(["model": "m", "messages": []])?.code == "empty_array")
        #expect(failure(["model": "m"])?.param == "messages")
        #expect(failure(["model": "m", "messages": [["content": "no role"]]])?.param == "messages[0].role")
        #expect(failure(["model": "m", "messages": [["role": "wizard"]]])?.param == "messages[0].role")
        var body = valid
        body["max_tokens"] = 257
        #expect(failure(body)?.param == "max_tokens")
        body["max_tokens"] = 0
        #expect(failure(body)?.param == "max_tokens")
        body = valid
        body["temperature"] = 3
        #expect(failure(body)?.param == "temperature")
        body = valid
        body["stop"] = [1, 2]
        #expect(failure(body)?.param == "stop")
        body = valid
        body["stream"] = "yes"
        #expect(failure(body)?.param == "stream")
        body = valid
        body["n"] = 2
        #expect(failure(body)?.param == "n")
        #expect(failure(["model": "m", "prompt": 5], .text)?.param == "prompt")
    }

    /// What an engine would refuse as a server error (and so count against an honest node) is the client's mistake,
    /// refused here with the field named.
    @Test(
        arguments: [
            (["tools": "notalist"], "tools"),
            (["tools": [["type": "function"]]], "tools[0].function"),
            (["tools": [["type": "retrieval", "function": ["name": "f"]]]], "tools[0].type"),
            (["tools": [["type": "function", "function": ["name": ""]]]], "tools[0].function.name"),
            (["tools": [["type": "function", "function": ["name": "f", "parameters": "x"]]]], "tools[0].function.parameters"),
            (["tool_choice": "sometimes"], "tool_choice"),
            (["response_format": ["type": "bogus"]], "response_format"),
            (["response_format": "json"], "response_format"),
            (["response_format": ["type": "json_schema", "json_schema": ["name": "x"]]], "response_format.json_schema.schema"),
        ] as [(JSONValue, String)]
    )
    func refusesMalformedToolsAndFormatsNamingTheField(extra: JSONValue, param: String) {
        var body = valid
        for (key, value) in extra.objectValue ?? [:] { body[key] = value }
        #expect(failure(body)?.param == param)
        #expect(failure(body)?.kind == .invalidRequest)
    }

    @Test func acceptsWellFormedToolsFormatsAndTextParts() {
        var body = valid
        body["tools"] = [["type": "function", "function": ["name": "weather", "parameters": ["type": "object"]]]]
        body["tool_choice"] = ["type": "function", "function": ["name": "weather"]]
        body["response_format"] = ["type": "json_schema", "json_schema": ["name": "w", "schema": ["type": "object"]]]
        body["messages"] = [
            ["role": "user", "content": [["type": "text", "text": "hi"]]], ["role": "assistant", "content": .null],
            ["role": "assistant", "content": [["type": "refusal", "refusal": "no"]]],
        ]
        #expect(failure(body) == nil)
    }

    @Test func refusesContentPartsTheModelsCannotRead() {
        var body = valid
        body["messages"] = [["role": "user", "content": [["type": "image_url", "image_url": ["url": "data:image/png;base64,AAAA"]]]]]
        #expect(failure(body)?.code == "unsupported_content")
        #expect(failure(body)?.param == "messages[0].content[0]")
        body["messages"] = [["role": "user", "content": 123]]
        #expect(failure(body)?.param == "messages[0].content")
        body["messages"] = [["role": "user", "content": [["type": "text"]]]]
        #expect(failure(body)?.param == "messages[0].content[0].text")
    }

    @Test func errorKindsMapToTheOpenAIStatusTable() {
        #expect(APIFailure(.invalidRequest, "").status == 400)
        #expect(APIFailure(.notFound, "").status == 404)
        #expect(APIFailure(.requestTooLarge, "").status == 413)
        #expect(APIFailure(.rateLimited, "").status == 429)
        #expect(APIFailure(.upstream, "").status == 502)
        #expect(APIFailure(.unavailable, "").status == 503)
        #expect(APIFailure(.notFound, "").type == "not_found_error")
    }
}
