import Foundation
import HearthCore
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat

/// `POST /v1/chat/completions` and `POST /v1/completions`: checked, routed to a node, relayed without buffering.
struct CompletionsController {
    let pipeline: CompletionPipeline

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/v1/chat/completions") { request, context in
            try await complete(.chat, request: request, context: context)
        }
        router.post("/v1/completions") { request, context in
            try await complete(.text, request: request, context: context)
        }
    }

    func complete(_ endpoint: CompletionEndpoint, request: Request, context: GatewayRequestContext) async throws -> Response {
        let startedAt = Date()
        let json = try await pipeline.readJSON(request)
        let prepared: CompletionRequest
        do {
            prepared = try CompletionRequest(endpoint: endpoint, body: json, limits: pipeline.limits)
        } catch {
            throw OpenAIError(error)
        }
        let served = try await pipeline.open(
            endpoint,
            model: prepared.model,
            body: prepared.upstreamBody,
            route: endpoint.rawValue,
            context: context,
            startedAt: startedAt
        )
        var headers: HTTPFields = [.hearthNode: served.node.short]

        guard prepared.stream else {
            var body = served.upstream.firstChunk ?? ByteBuffer()
            do {
                var rest = try await served.upstream.response.body.collect(upTo: 64 << 20)
                body.writeBuffer(&rest)
            } catch {
                await served.finish(usage: nil, fallbackCompletionTokens: 0, status: "upstream_error")
                throw OpenAIError(.upstream, "The node's answer broke off.", code: "upstream_failed")
            }
            let usage = (try? JSONDecoder().decode(CompletionChunk.self, from: body))?.usage
            headers[.contentType] = "application/json"
            return served.respond(with: body, headers: headers, usage: usage, fallbackCompletionTokens: 0)
        }

        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let clientWantsUsage = prepared.clientWantsUsage
        let metrics = pipeline.metrics
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { writer in
                metrics.streamStarted()
                defer { metrics.streamEnded() }
                var reader = SSEEventReader(served.upstream)
                var tally = StreamTally()
                var outcome = "ok"
                relay: while true {
                    let event: ByteBuffer
                    do {
                        guard let next = try await reader.next() else { break relay }
                        event = next
                    } catch {
                        outcome = "upstream_error"
                        try? await writer.write(ByteBuffer(string: Self.streamErrorEvent))
                        break relay
                    }
                    if case .usage(_, let usageOnly, _) = tally.observe(event), usageOnly && !clientWantsUsage { continue relay }
                    do {
                        try await writer.write(event)
                    } catch {
                        outcome = "client_closed"
                        break relay
                    }
                }
                if outcome == "client_closed" {
                    // The engine stops now; the node's receipt for what it did comes at the end of the stream.
                    await served.cancelAndDrain(&reader, tally: &tally)
                } else {
                    do { try await writer.finish(nil) } catch { outcome = "client_closed" }
                }
                await served.finish(usage: tally.counted, fallbackCompletionTokens: tally.fallbackCompletionTokens, status: outcome)
            }
        )
    }

    /// Sent when the node's stream breaks after the client already has a 200.
    static let streamErrorEvent =
        "data: {\"error\":{\"message\":\"The node's stream broke off.\",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_failed\"}}\n\n"
}
