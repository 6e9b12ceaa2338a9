import Testing

@testable import HearthCore

struct OllamaTranslationTests {
    @Test func chatBecomesAnOpenAIBodyWithOptionsMapped() throws {
        let body = try OllamaTranslation.chatBody(fromChat: [
            "model": "m", "messages": [["role": "user", "content": "hi"]],
            "options": ["num_predict": 5, "temperature": 0.2, "seed": 3, "stop": ["x"], "num_ctx": 99],
            "format": "json",
        ])
        #expect(body["model"] == "m")
        #expect(body["stream"] == true)
        #expect(body["max_tokens"] == 5)
        #expect(body["temperature"] == 0.2)
        #expect(body["seed"] == 3)
        #expect(body["stop"] == ["x"])
        #expect(body["num_ctx"] == nil)
        #expect(body["response_format"]?["type"] == "json_object")
    }

    @Test func negativeNumPredictMeansTheGatewayDefault() throws {
        let body = try OllamaTranslation.chatBody(fromChat: ["model": "m", "messages": [], "options": ["num_predict": -1]])
        #expect(body["max_tokens"] == nil)
    }

    /// A bad option is refused in the client's words: `options.num_predict`, not the `max_tokens` it became.
    @Test func aBadOptionIsNamedAsTheClientSentIt() throws {
        let ollama: JSONValue = ["model": "m", "messages": [["role": "user", "content": "hi"]], "options": ["num_predict": "x"]]
        let body = try OllamaTranslation.chatBody(fromChat: ollama)
        let limits = RequestLimits()
        #expect(throws: APIFailure.self) { try CompletionRequest(endpoint: .chat, body: body, limits: limits) }
        do {
            _ = try CompletionRequest(endpoint: .chat, body: body, limits: limits)
        } catch {
            let restated = OllamaTranslation.restated(error, for: ollama)
            #expect(restated.param == "options.num_predict")
            #expect(restated.message.contains("'options.num_predict'") && !restated.message.contains("max_tokens"), "\(restated.message)")
        }
        // A failure of a member the client did send is left as it is.
        let other = APIFailure(.invalidRequest, "'messages' must be an array.", param: "messages", code: "invalid_type")
        #expect(OllamaTranslation.restated(other, for: ollama) == other)
    }

    @Test func generateUsesSystemAndPromptAndHonoursStreamFalse() throws {
        let body = try OllamaTranslation.chatBody(fromGenerate: ["model": "m", "prompt": "p", "system": "s", "stream": false])
        #expect(body["messages"] == [["role": "system", "content": "s"], ["role": "user", "content": "p"]])
        #expect(body["stream"] == false)
    }

    @Test func aRawGenerateIsATextCompletionOfThePromptAsItIs() throws {
        let raw: JSONValue = ["model": "m", "prompt": "Once", "system": "s", "raw": true, "options": ["num_predict": 5, "stop": ["."]]]
        #expect(try OllamaTranslation.isRaw(raw))
        #expect(try !OllamaTranslation.isRaw(["model": "m", "prompt": "p"]))
        let body = try OllamaTranslation.completionBody(fromRawGenerate: raw)
        #expect(body == ["model": "m", "prompt": "Once", "stream": true, "max_tokens": 5, "stop": ["."]])
        #expect(throws: APIFailure.self) { try OllamaTranslation.isRaw(["raw": 1]) }
        #expect(throws: APIFailure.self) { try OllamaTranslation.completionBody(fromRawGenerate: ["model": "m", "raw": true]) }
    }

    @Test func rejectsMalformedBodies() {
        #expect(throws: APIFailure.self) { try OllamaTranslation.chatBody(fromChat: ["model": "m", "messages": "hi"]) }
        #expect(throws: APIFailure.self) { try OllamaTranslation.chatBody(fromGenerate: ["model": "m", "prompt": 1]) }
        #expect(throws: APIFailure.self) { try OllamaTranslation.chatBody(fromChat: ["model": "m", "messages": [], "options": 1]) }
        #expect(throws: APIFailure.self) { try OllamaTranslation.wantsStream(["stream": "no"]) }
    }

    /// What Hearth cannot honour is refused, never silently dropped or turned into an empty string.
    @Test func refusesImagesNonStringContentAndMalformedToolCalls() {
        func param(_ body: JSONValue, generate: Bool = false) -> String? {
            do {
                _ = generate ? try OllamaTranslation.chatBody(fromGenerate: body) : try OllamaTranslation.chatBody(fromChat: body)
                return nil
            } catch {
                return error.param
            }
        }
        #expect(param(["model": "m", "messages": [["role": "user", "content": "hi", "images": ["AAAA"]]]]) == "messages[0].images")
        #expect(param(["model": "m", "prompt": "hi", "images": ["AAAA"]], generate: true) == "images")
        #expect(param(["model": "m", "prompt": "def f(", "suffix": "    return x"], generate: true) == "suffix")
        #expect(param(["model": "m", "prompt": "def f(", "suffix": ""], generate: true) == nil)
        #expect(param(["model": "m", "prompt": "and then?", "context": [1, 2, 3]], generate: true) == "context")
        #expect(param(["model": "m", "prompt": "and then?", "context": []], generate: true) == nil)
        #expect(param(["model": "m", "prompt": "and then?", "context": .null], generate: true) == nil)
        #expect(param(["model": "m", "prompt": "why?", "think": true], generate: true) == "think")
        #expect(param(["model": "m", "messages": [["role": "user", "content": "hi"]], "think": "high"]) == "think")
        #expect(param(["model": "m", "messages": [["role": "user", "content": "hi"]], "think": false]) == nil)
        #expect(param(["model": "m", "messages": [["role": "user", "content": 123]]]) == "messages[0].content")
        #expect(param(["model": "m", "messages": [["role": "assistant", "content": "", "tool_calls": "x"]]]) == "messages[0].tool_calls")
        #expect(
            param(["model": "m", "messages": [["role": "assistant", "content": "", "tool_calls": [["function": ["arguments": [:]]]]]]])
                == "messages[0].tool_calls[0].function.name"
        )
        #expect(param(["model": "m", "messages": [["role": "user", "content": "hi", "images": []]], "tools": []]) == nil)
    }

    /// Ollama's calls carry object arguments and no ids; OpenAI's, JSON text and ids that the tool answers name.
    @Test func toolCallsAndTheirAnswersBecomeOpenAIsWithIDs() throws {
        let tools: JSONValue = [["type": "function", "function": ["name": "get_weather", "parameters": ["type": "object"]]]]
        let body = try OllamaTranslation.chatBody(fromChat: [
            "model": "m",
            "messages": [
                ["role": "user", "content": "Weather and time in Paris?"],
                [
                    "role": "assistant", "content": "",
                    "tool_calls": [
                        ["function": ["name": "get_weather", "arguments": ["city": "Paris"]]], ["function": ["name": "get_time"]],
                    ],
                ],
                ["role": "tool", "content": "sunny", "tool_name": "get_weather"],
                ["role": "tool", "content": "noon"],
            ],
            "tools": tools,
        ])
        let messages = try #require(body["messages"]?.arrayValue)
        #expect(
            messages[1]["tool_calls"] == [
                ["id": "call_1", "type": "function", "function": ["name": "get_weather", "arguments": #"{"city":"Paris"}"#]],
                ["id": "call_2", "type": "function", "function": ["name": "get_time", "arguments": "{}"]],
            ]
        )
        #expect(messages[2] == ["role": "tool", "content": "sunny", "tool_call_id": "call_1"])
        #expect(messages[3]["tool_call_id"] == "call_2")
        #expect(body["tools"] == tools)
    }

    /// An OpenAI stream's call pieces, gathered into Ollama's whole calls.
    @Test func assemblesStreamedToolCalls() throws {
        var calls = OllamaToolCalls.Assembler()
        #expect(calls.isEmpty)
        for delta: JSONValue in [
            ["tool_calls": [["index": 0, "id": "c", "type": "function", "function": ["name": "get_weather", "arguments": ""]]]],
            ["tool_calls": [["index": 0, "function": ["arguments": #"{"city":"#]]]],
            ["tool_calls": [["index": 1, "function": ["name": "get_time", "arguments": "not json"]]]],
            ["tool_calls": [["index": 0, "function": ["arguments": #""Paris"}"#]]]],
        ] {
            calls.add(["choices": [["index": 0, "delta": delta]]])
        }
        #expect(
            calls.ollama == [
                ["function": ["name": "get_weather", "arguments": ["city": "Paris"]]],
                ["function": ["name": "get_time", "arguments": "not json"]],
            ]
        )
        let writer = OllamaResponseWriter(shape: .chat, model: "m", createdAt: "t")
        #expect(writer.toolCalls(calls.ollama)["message"]?["tool_calls"]?.arrayValue?.count == 2)
        #expect(writer.toolCalls(calls.ollama)["done"] == false)
    }

    @Test func finalLineCarriesCountersAndDurations() {
        let writer = OllamaResponseWriter(shape: .generate, model: "m", createdAt: "t")
        let line = writer.final(
            text: "all",
            statistics: OllamaStatistics(
                doneReason: "stop",
                promptTokens: 3,
                completionTokens: 4,
                totalNanoseconds: 10,
                promptNanoseconds: 2,
                evalNanoseconds: 8
            )
        )
        #expect(line["done"] == true)
        #expect(line["response"] == "all")
        #expect(line["prompt_eval_count"] == 3)
        #expect(line["eval_count"] == 4)
        #expect(line["eval_duration"] == 8)
        #expect(OllamaResponseWriter.doneReason(fromFinishReason: "length") == "length")
    }
}
