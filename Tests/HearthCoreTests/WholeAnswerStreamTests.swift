import Testing

@testable import HearthCore

/// A whole answer as a stream's events (`WholeAnswerStream`), for a server that answered a stream's request whole.
struct WholeAnswerStreamTests {
    @Test func aChatAnswerBecomesItsOpeningClosingAndUsageEvents() throws {
        let answer: JSONValue = [
            "id": "chatcmpl-7", "object": "chat.completion", "created": 1_764_497_564, "model": "owners-name", "system_fingerprint": "fp",
            "choices": [
                [
                    "index": 0, "finish_reason": "tool_calls",
                    "message": [
                        "role": "assistant", "content": "Let me look.",
                        "tool_calls": [
                            ["id": "call_a", "type": "function", "function": ["name": "weather", "arguments": #"{"city":"Paris"}"#]],
                            ["id": "call_b", "type": "function", "function": ["name": "time", "arguments": "{}"]],
                        ],
                    ],
                ]
            ],
            "usage": ["prompt_tokens": 31, "completion_tokens": 8, "total_tokens": 39],
        ]
        let events = try #require(WholeAnswerStream.events(of: answer))
        #expect(events.count == 3)
        for event in events {
            #expect(event["object"] == "chat.completion.chunk")
            #expect(event["id"] == "chatcmpl-7" && event["created"] == 1_764_497_564 && event["model"] == "owners-name")
        }
        let opening = try #require(events[0]["choices"]?[0])
        #expect(opening["delta"]?["role"] == "assistant" && opening["delta"]?["content"] == "Let me look.")
        #expect(opening["finish_reason"] == .null)
        // Streamed tool calls name their place in the list.
        #expect(opening["delta"]?["tool_calls"]?[0]?["index"] == 0 && opening["delta"]?["tool_calls"]?[1]?["index"] == 1)
        #expect(opening["delta"]?["tool_calls"]?[1]?["function"]?["name"] == "time")
        #expect(events[1]["choices"]?[0]?["delta"] == [:] && events[1]["choices"]?[0]?["finish_reason"] == "tool_calls")
        #expect(events[2]["choices"] == [] && events[2]["usage"]?["completion_tokens"] == 8)
    }

    @Test func aTextCompletionKeepsItsShapeAndEveryChoice() throws {
        let answer: JSONValue = [
            "id": "cmpl-1", "object": "text_completion", "created": 5, "model": "m",
            "choices": [["index": 0, "text": "one", "finish_reason": "length"], ["index": 1, "text": "two", "finish_reason": "stop"]],
        ]
        let events = try #require(WholeAnswerStream.events(of: answer))
        #expect(events.count == 2, "no usage, no usage event")
        #expect(events.allSatisfy { $0["object"] == "text_completion" })
        #expect(events[0]["choices"]?[0]?["text"] == "one" && events[0]["choices"]?[1]?["text"] == "two")
        #expect(events[0]["choices"]?[1]?["logprobs"] == .null)
        #expect(events[1]["choices"]?[0]?["finish_reason"] == "length" && events[1]["choices"]?[1]?["finish_reason"] == "stop")
        #expect(events[1]["choices"]?[1]?["text"] == "")
    }

    @Test func whatIsNoCompletionMakesNoEvents() {
        #expect(WholeAnswerStream.events(of: ["error": ["message": "busy"]]) == nil)
        #expect(WholeAnswerStream.events(of: "text") == nil)
        #expect(WholeAnswerStream.events(of: ["object": "chat.completion", "choices": [["index": 0, "finish_reason": "stop"]]]) == nil)
        #expect(WholeAnswerStream.events(of: ["choices": [7]]) == nil)
    }
}
