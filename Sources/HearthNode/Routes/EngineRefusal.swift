import Foundation
import HearthCore
import NIOCore
import NIOFoundationEssentialsCompat

/// What an engine's error answer means for the gateway: the client's mistake (400, never retried elsewhere and never
/// held against this node), a busy engine (503, tried elsewhere), or the engine failing (502, tried elsewhere).
///
/// llama-server answers a malformed request in several ways: 400 `invalid_request_error` for what it checks itself,
/// but a plain 500 for JSON it cannot convert (`[json.exception.type_error…]`, e.g. `tools: "notalist"`) and for
/// features the model cannot serve (an image for a text-only model). Passing those 500s on as server errors would make
/// the gateway try every node with the same bad request, and make honest nodes look broken.
enum EngineRefusal {
    static func failure(status: Int, body: ByteBuffer) -> APIFailure {
        let error = (try? JSONDecoder().decode(JSONValue.self, from: body))?["error"]
        let message = error?["message"]?.stringValue ?? String(buffer: body).prefix(500).description
        let type = error?["type"]?.stringValue
        let reason = message.isEmpty ? "The engine refused the request (HTTP \(status))." : message
        if type == "exceed_context_size_error" {
            return contextExceeded(reason, promptTokens: error?["n_prompt_tokens"]?.integerValue, context: error?["n_ctx"]?.integerValue)
        }
        switch status {
        case 503: return APIFailure(.unavailable, reason, code: "engine_busy")
        case 413: return APIFailure(.requestTooLarge, reason, code: "engine_rejected")
        case 400..<500: return APIFailure(.invalidRequest, reason, code: "engine_rejected")
        case 501: return APIFailure(.invalidRequest, reason, code: "engine_rejected")
        default:
            if type == "invalid_request_error" || type == "not_supported_error" || isInputError(message) {
                return APIFailure(.invalidRequest, reason, code: "engine_rejected")
            }
            return APIFailure(.upstream, "The engine failed (HTTP \(status)): \(reason)", code: "engine_failed")
        }
    }

    /// A prompt longer than the engine's context, said as OpenAI says it (`context_length_exceeded`, and its message's
    /// opening words): clients and frameworks recognise that code or those words to trim a conversation and try again,
    /// and llama-server's own words (`exceeds the available context size`), which some recognise too, stay.
    static func contextExceeded(_ reason: String, promptTokens: Int64?, context: Int64?) -> APIFailure {
        guard let promptTokens, let context else {
            return APIFailure(.invalidRequest, reason, code: "context_length_exceeded")
        }
        return APIFailure(
            .invalidRequest,
            "This model's maximum context length is \(context) tokens on the node that served it, but the prompt is "
                + "\(promptTokens) tokens: it exceeds the available context size. Shorten the messages or the prompt.",
            code: "context_length_exceeded"
        )
    }

    /// Messages llama-server gives with a 500 for input it could not read, rather than for a fault of its own.
    static func isInputError(_ message: String) -> Bool {
        // Seen with llama.cpp b11434: "Failed to parse tools: Expected 'tools' to be an array…" and "image input is not
        // supported - hint: …", both 500 server_error.
        let markers = ["[json.exception.", "Failed to parse", "is not supported", "Expected '", "must be"]
        return markers.contains { message.contains($0) }
    }
}
