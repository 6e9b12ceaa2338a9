/// Tool calls between Ollama's shapes and OpenAI's. Ollama's `tools` are OpenAI's; its calls differ: an assistant's
/// `tool_calls` carry `arguments` as an object and no id, and a `tool` message names no call. OpenAI's carry the
/// arguments as JSON text, an id, and a tool message the id it answers; its streams send a call in pieces.
package enum OllamaToolCalls {
    /// An Ollama conversation's messages with tool calls in OpenAI's shape: each call gets an id (`call_<n>`, in the
    /// conversation's order), and each `tool` message answers the oldest call not yet answered (or the one its
    /// `tool_call_id` names).
    static func openAIMessages(_ messages: [JSONValue]) throws(APIFailure) -> [JSONValue] {
        var unanswered: [String] = []
        var issued = 0
        var result: [JSONValue] = []
        for (index, message) in messages.enumerated() {
            var converted = message
            if let calls = message["tool_calls"], calls != .null {
                guard let list = calls.arrayValue else {
                    throw APIFailure(
                        .invalidRequest,
                        "messages[\(index)].tool_calls must be an array.",
                        param: "messages[\(index)].tool_calls",
                        code: "invalid_type"
                    )
                }
                var openAI: [JSONValue] = []
                for (callIndex, call) in list.enumerated() {
                    let param = "messages[\(index)].tool_calls[\(callIndex)].function"
                    guard let name = call["function"]?["name"]?.stringValue else {
                        throw APIFailure(.invalidRequest, "\(param).name must be a string.", param: "\(param).name", code: "invalid_type")
                    }
                    let arguments: String
                    switch call["function"]?["arguments"] {
                    case .none, .null?: arguments = "{}"
                    case .string(let text)?: arguments = text
                    case let value?: arguments = String(decoding: value.serialized(), as: UTF8.self)
                    }
                    issued += 1
                    let id = "call_\(issued)"
                    unanswered.append(id)
                    openAI.append(["id": .string(id), "type": "function", "function": ["name": .string(name), "arguments": .string(arguments)]])
                }
                converted["tool_calls"] = .array(openAI)
            }
            if message["role"]?.stringValue == "tool" {
                if let named = message["tool_call_id"]?.stringValue {
                    unanswered.removeAll { $0 == named }
                } else {
                    converted["tool_call_id"] = .string(unanswered.isEmpty ? "call_0" : unanswered.removeFirst())
                }
                converted["tool_name"] = nil
            }
            result.append(converted)
        }
        return result
    }

    /// Gathers the tool calls an OpenAI stream sends in pieces (`delta.tool_calls`, each piece naming its call's
    /// `index`), into Ollama's calls once the stream is over.
    package struct Assembler: Sendable {
        private var calls: [Int: (name: String, arguments: String)] = [:]

        package init() {}

        package var isEmpty: Bool { calls.isEmpty }

        /// Takes the pieces in one event's first choice (its `delta`, or a whole answer's `message`).
        package mutating func add(_ chunk: JSONValue) {
            let choice = chunk["choices"]?[0]
            for piece in (choice?["delta"] ?? choice?["message"])?["tool_calls"]?.arrayValue ?? [] {
                let index = Int(piece["index"]?.integerValue ?? Int64(calls.count))
                var call = calls[index] ?? ("", "")
                call.name += piece["function"]?["name"]?.stringValue ?? ""
                call.arguments += piece["function"]?["arguments"]?.stringValue ?? ""
                calls[index] = call
            }
        }

        /// Ollama's `tool_calls`: arguments as an object (as the model wrote them when they are no JSON object).
        package var ollama: [JSONValue] {
            calls.keys.sorted().compactMap { index in
                guard let call = calls[index] else { return nil }
                let parsed = try? JSONValue.parse(Array(call.arguments.utf8))
                let arguments: JSONValue =
                    if case .object? = parsed { parsed! } else if call.arguments.isEmpty { [:] } else { .string(call.arguments) }
                return ["function": ["name": .string(call.name), "arguments": arguments]]
            }
        }
    }
}
