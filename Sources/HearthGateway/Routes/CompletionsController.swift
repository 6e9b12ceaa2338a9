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
        let route = endpoint.rawValue
        let upstream = try await pipeline.open(
            endpoint,
            model: prepared.model,
            body: prepared.upstreamBody,
            route: route,
            context: context,
            startedAt: startedAt
        )
        guard upstream.response.status < 400 else {
            throw await pipeline.relayNodeError(upstream)
        }
        var headers: HTTPFields = [.hearthNode: upstream.node.short]
        let model = prepared.model.rawValue
        let requestID = context.id
        let logger = context.logger
        let pipeline = self.pipeline

        guard prepared.stream else {
            var body = upstream.firstChunk ?? ByteBuffer()
            var outcome = "ok"
            do {
                var rest = try await upstream.response.body.collect(upTo: 64 << 20)
                body.writeBuffer(&rest)
            } catch {
                outcome = "upstream_error"
            }
            let usage = (try? JSONDecoder().decode(CompletionChunk.self, from: body))?.usage
            await pipeline.finish(
                upstream,
                usage: usage,
                fallbackCompletionTokens: 0,
                status: outcome,
                route: route,
                model: model,
                requestID: requestID,
                startedAt: startedAt,
                logger: logger
            )
            guard outcome == "ok" else {
                throw OpenAIError(.upstream, "The node's answer broke off.", code: "upstream_failed")
            }
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: body))
        }

        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let clientWantsUsage = prepared.clientWantsUsage
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody { writer in
                pipeline.metrics.streamStarted()
                defer { pipeline.metrics.streamEnded() }
                var reader = SSEEventReader(upstream)
                var usage: TokenUsage?
                var contentEvents = 0
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
                    switch UpstreamEvent.classify(event) {
                    case .usage(let reported, let usageOnly, _):
                        usage = reported
                        if usageOnly && !clientWantsUsage { continue relay }
                    case .done: break
                    case .other: contentEvents += 1
                    }
                    do {
                        try await writer.write(event)
                    } catch {
                        outcome = "client_closed"
                        break relay
                    }
                }
                await pipeline.finish(
                    upstream,
                    usage: usage,
                    fallbackCompletionTokens: max(0, contentEvents - 1),
                    status: outcome,
                    route: route,
                    model: model,
                    requestID: requestID,
                    startedAt: startedAt,
                    logger: logger
                )
                if outcome != "client_closed" {
                    try await writer.finish(nil)
                }
            }
        )
    }

    /// Sent when the node's stream breaks after the client already has a 200.
    static let streamErrorEvent =
        "data: {\"error\":{\"message\":\"The node's stream broke off.\",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_failed\"}}\n\n"
}
