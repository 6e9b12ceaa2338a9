/// A whole answer (`chat.completion` or `text_completion`) as the events a stream of it would have had. Some
/// OpenAI-compatible servers (an owner's proxy, an older server) answer a request that asked for a stream whole,
/// `application/json`: passed on as it came, the client that asked for server-sent events got one JSON document under
/// `text/event-stream` and no `[DONE]`. As events, it gets what a stream gives: an opening event per choice with all
/// of its text (a chat's role, content, tool calls), a closing one with its `finish_reason`, and the usage event that
/// `stream_options.include_usage` asks for when the answer had usage.
package enum WholeAnswerStream {
    /// The events, in order (without `[DONE]`); `nil` when `answer` is not a completion (no `choices`, a chat choice
    /// without its `message`).
    package static func events(of answer: JSONValue) -> [JSONValue]? {
        guard case .object = answer, let choices = answer["choices"]?.arrayValue else { return nil }
        let chat = answer["object"]?.stringValue == "chat.completion" || choices.contains { $0["message"] != nil }
        var base: JSONValue = ["object": .string(chat ? "chat.completion.chunk" : "text_completion")]
        for key in ["id", "created", "model", "system_fingerprint"] {
            if let value = answer[key] { base[key] = value }
        }
        var opening: [JSONValue] = []
        var closing: [JSONValue] = []
        for (position, choice) in choices.enumerated() {
            guard case .object = choice else { return nil }
            let index = choice["index"] ?? .integer(Int64(position))
            let finish = choice["finish_reason"] ?? .null
            if chat {
                guard case .object = choice["message"], var delta = choice["message"] else { return nil }
                // A streamed tool call names its place in the list (`index`), which a whole answer's does not.
                if let calls = delta["tool_calls"]?.arrayValue {
                    delta["tool_calls"] = .array(
                        calls.enumerated().map { place, call in
                            var call = call
                            if case .object = call { call["index"] = .integer(Int64(place)) }
                            return call
                        }
                    )
                }
                var first: JSONValue = ["index": index, "delta": delta, "finish_reason": .null]
                if let logprobs = choice["logprobs"] { first["logprobs"] = logprobs }
                opening.append(first)
                closing.append(["index": index, "delta": [:], "finish_reason": finish])
            } else {
                opening.append(["index": index, "text": choice["text"] ?? "", "logprobs": choice["logprobs"] ?? .null, "finish_reason": .null])
                closing.append(["index": index, "text": "", "logprobs": .null, "finish_reason": finish])
            }
        }
        var first = base
        first["choices"] = .array(opening)
        var last = base
        last["choices"] = .array(closing)
        var events = [first, last]
        if let usage = answer["usage"], case .object = usage {
            var tally = base
            tally["choices"] = []
            tally["usage"] = usage
            events.append(tally)
        }
        return events
    }
}
