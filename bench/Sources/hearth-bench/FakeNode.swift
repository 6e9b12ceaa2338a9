import Foundation
import HearthCore
import Hummingbird
import NIOCore
import ServiceLifecycle

/// A FAKE node for the gateway-ceiling benchmark: it answers every chat request at once with `tokens` canned
/// SSE events, so the measurement shows what the gateway and the link cost, not an engine. It joins the gateway
/// over a real link, like a node.
struct FakeNode {
    let tokens: Int
    let report: NodeReport

    func router() throws -> Router<BasicRequestContext> {
        let router = Router()
        let reportBuffer = ByteBuffer(bytes: try JSONEncoder().encode(report))
        let hello = ByteBuffer(bytes: try JSONEncoder().encode(LinkHello(deviceCertificate: nil, invite: nil, version: HearthVersion.current)))
        router.get(RouterPath(LinkProtocol.Path.hello)) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: hello))
        }
        // The state never changes: answer a long poll at the end of its wait, a first poll at once.
        router.get(RouterPath(LinkProtocol.Path.report)) { request, _ in
            if request.headers[.init(LinkProtocol.Header.after)!] != nil {
                let wait = request.headers[.init(LinkProtocol.Header.waitMilliseconds)!].flatMap { Int($0) } ?? 0
                try await Task.sleep(for: .milliseconds(min(wait, 60_000)))
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: reportBuffer))
        }
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
        return router
    }
}
