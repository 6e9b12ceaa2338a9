import Foundation
import HearthCore
import Hummingbird
import NIOCore
import ServiceLifecycle

/// A FAKE node for the gateway-ceiling benchmark: it answers every chat request at once with `tokens` canned
/// SSE events, so the measurement shows what the gateway itself costs, not an engine.
struct FakeNode {
    let tokens: Int

    func application(onPort: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let router = Router()
        var events = ByteBuffer()
        events.writeString(#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}"# + "\n\n")
        let token = #"data: {"choices":[{"index":0,"delta":{"content":" tok"}}],"object":"chat.completion.chunk"}"# + "\n\n"
        let finish =
            #"data: {"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}"# + "\n\n"
            + #"data: {"choices":[],"object":"chat.completion.chunk","usage":{"completion_tokens":\#(tokens),"prompt_tokens":8,"total_tokens":\#(tokens + 8)}}"#
            + "\n\ndata: [DONE]\n\n"
        let tokenBuffer = ByteBuffer(string: token)
        let finishBuffer = ByteBuffer(string: finish)
        let first = events
        let count = tokens
        router.post("/v1/chat/completions") { request, _ in
            _ = try await request.body.collect(upTo: 1 << 20)
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream"],
                body: ResponseBody { writer in
                    try await writer.write(first)
                    for _ in 0..<count { try await writer.write(tokenBuffer) }
                    try await writer.write(finishBuffer)
                    try await writer.finish(nil)
                }
            )
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in await onPort(channel.localAddress?.port ?? 0) }
        )
    }
}
