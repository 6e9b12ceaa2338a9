import HearthCore
import Testing

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
