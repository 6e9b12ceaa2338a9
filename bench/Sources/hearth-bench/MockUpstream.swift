import Foundation
import HearthCore
import Hummingbird
import NIOCore

/// The upstream every proxy of the `proxies` part stands in front of: an OpenAI-compatible server that streams canned
/// tokens paced like an engine, so nginx, LiteLLM and a Hearth node with `--backend` do the same work.
///
/// The pace comes with each request, in `seed` (milliseconds between events; 0 sends them at once): a field every
/// proxy passes on untouched, so one mock serves every phase. `max_tokens` says how many tokens to send. It also
/// answers Ollama's `/api/show` with the catalog's hash for its model, so a Hearth node verifies it like an Ollama.
struct MockUpstream {
    static let name = "mock"

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/v1/models") { _, _ in
            Self.json(#"{"object":"list","data":[{"id":"\#(Self.name)","object":"model","owned_by":"bench"}]}"#)
        }
        router.post("/api/show") { _, _ in
            Self.json(#"{"modelfile":"FROM /blobs/sha256-\#(DefaultModel.sha256.hex)\n"}"#)
        }
        router.get("/health") { _, _ in Self.json(#"{"status":"ok"}"#) }
        router.post("/v1/chat/completions") { request, _ in
            let body = try await request.body.collect(upTo: 1 << 20)
            let json = (try? JSONValue.parse(body.readableBytesView)) ?? [:]
            let tokens = Int(json["max_tokens"]?.integerValue ?? 16)
            let interval = Int(json["seed"]?.integerValue ?? 0)
            let usage = #"{"prompt_tokens":12,"completion_tokens":\#(tokens),"total_tokens":\#(tokens + 12)}"#
            guard json["stream"]?.boolValue == true else {
                let text = String(repeating: " tok", count: tokens)
                return Self.json(
                    #"{"id":"chatcmpl-mock","object":"chat.completion","created":1,"model":"mock","choices":[{"index":0,"message":{"role":"assistant","content":"\#(text)"},"finish_reason":"length"}],"usage":\#(usage)}"#
                )
            }
            let withUsage = json["stream_options"]?["include_usage"]?.boolValue == true
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in
                    let head = #"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1,"model":"mock","choices":[{"index":0,"#
                    try await writer.write(
                        ByteBuffer(string: head + #""delta":{"role":"assistant","content":null},"finish_reason":null}]}"# + "\n\n")
                    )
                    for _ in 0..<tokens {
                        if interval > 0 { try await Task.sleep(for: .milliseconds(interval)) }
                        try await writer.write(ByteBuffer(string: head + #""delta":{"content":" tok"},"finish_reason":null}]}"# + "\n\n"))
                    }
                    var tail = head + #""delta":{},"finish_reason":"length"}]}"# + "\n\n"
                    if withUsage {
                        tail +=
                            #"data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1,"model":"mock","choices":[],"usage":\#(usage)}"#
                            + "\n\n"
                    }
                    try await writer.write(ByteBuffer(string: tail + "data: [DONE]\n\n"))
                    try await writer.finish(nil)
                }
            )
        }
        return router
    }

    private static func json(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
