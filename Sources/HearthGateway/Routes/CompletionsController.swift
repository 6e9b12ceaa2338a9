import Foundation
import HearthCore
import HearthWeb
import Hummingbird
import Logging
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
        let json = try await pipeline.readJSON(request, context: context)
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
            startedAt: startedAt,
            allowDegrade: request.allowsDegrade
        )
        guard prepared.stream else {
            return try await answerWhole(served, body: prepared.upstreamBody, endpoint: endpoint)
        }
        var headers: HTTPFields = [.hearthNode: served.node.short]
        served.addDegradation(to: &headers)

        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let clientWantsUsage = prepared.clientWantsUsage
        let metrics = pipeline.metrics
        let settlements = pipeline.settlements
        let opened = ContinuingStream(
            served,
            endpoint: endpoint,
            body: prepared.upstreamBody,
            maxContinuations: pipeline.maxContinuations
        )
        // A client that reset its connection before the head could be written: its node is asked to stop.
        let unwritten: @Sendable () -> Void = { opened.cancelBeside(settlements) }
        return Response(
            status: .ok,
            headers: headers,
            body: .owing(ifNeverRun: unwritten) { writer in
                metrics.streamStarted()
                defer { metrics.streamEnded() }
                // The events are relayed on the link's event loop; the metering after them runs beside the client's
                // connection (`Settlements`): a signature check of tens of microseconds, and the database's work on
                // the database's threads.
                await withTaskExecutorPreference(opened.executor) {
                    await Self.relay(opened, to: &writer, clientWantsUsage: clientWantsUsage, settlements: settlements)
                }
            }
        )
    }

    /// Relays a stream's events to its client, then settles it, or stops its node when the client left first.
    ///
    /// A held stream's task keeps the memory of the relay's deepest frames for as long as it streams, so the stream's
    /// state (about 1.2 KB) lives in this frame alone instead of in the body's closure and again in what the
    /// executor's closure handed back; with the reading of an event kept out of `ContinuingStream.next`'s frame, 2.3 KB
    /// less a held stream (`bench/README.md`, twenty-third pass).
    private static func relay(
        _ opened: ContinuingStream,
        to writer: inout any ResponseBodyWriter,
        clientWantsUsage: Bool,
        settlements: Settlements
    ) async {
        var stream = opened
        var outcome = RequestOutcome.ok
        relay: while true {
            let event: ByteBuffer
            do {
                guard let next = try await stream.next() else { break relay }
                if case .usage(_, let usageOnly) = next.kind, usageOnly && !clientWantsUsage { continue relay }
                event = next.event
            } catch {
                outcome = .upstreamError
                try? await writer.write(ByteBuffer(string: Self.streamErrorEvent))
                break relay
            }
            do {
                try await writer.write(event)
            } catch {
                outcome = .clientClosed
                break relay
            }
        }
        if outcome == .clientClosed {
            // A client gone before the end: its node is asked to stop. The engine stops now; the node's receipt for
            // what it did comes at the end of the stream.
            await stream.cancel()
            return
        }
        do { try await writer.finish(nil) } catch { outcome = .clientClosed }
        // The client has the whole stream: its connection is free for the next request at once.
        let finished = stream
        await settlements.settle { [outcome] in
            var finished = finished
            await finished.finish(status: outcome)
        }
    }

    /// A request that does not stream: the client sees nothing until the whole answer is in, so when the node breaks
    /// off, the request is asked again of another node (as part `<id>.<n>`, at most `--max-continuations` times), and
    /// the client just gets its answer later.
    func answerWhole(_ opened: ServedRequest, body: JSONValue, endpoint: CompletionEndpoint) async throws -> Response {
        var served = opened
        var tried: Set<NodeID> = [served.node]
        var part = 0
        while true {
            var answer = served.upstream.firstChunk ?? ByteBuffer()
            do {
                // An answer longer than its tokens can make (`UsageBounds.answerBytes`) is no honest answer: it is
                // broken off there rather than held whole.
                let limit = min(served.upstream.bounds.answerBytes, UsageBounds.largestWholeAnswer) - answer.readableBytes
                guard limit >= 0 else { throw NodeTransportError.responseTooLarge }
                // A node states its whole answer's length: the client is answered at its last byte, and the receipt
                // after it is read in the settlement.
                let stated = served.upstream.response.contentLength.map { $0 - answer.readableBytes }
                var rest = try await served.upstream.response.body.collect(upTo: limit, stated: stated)
                answer.writeBuffer(&rest)
                // A 200 that is no completion (empty when the node's engine broke off mid-answer; anything a node
                // may send) is a broken answer too: never passed on as the client's answer.
                let read = answer.withUnsafeReadableBytes { CompletionChunk.wholeAnswerUsage($0.assumingMemoryBound(to: UInt8.self)) }
                guard let usage = read else { throw NotACompletion() }
                var headers: HTTPFields = [.hearthNode: served.node.short, .contentType: "application/json"]
                served.addDegradation(to: &headers)
                return served.respond(with: answer, headers: headers, usage: usage, fallbackCompletionTokens: 0)
            } catch {
                await served.finish(usage: nil, fallbackCompletionTokens: 0, status: .upstreamError)
                part += 1
                guard part <= pipeline.maxContinuations,
                    let next = try? await served.openPart(part, endpoint: endpoint, body: body, excluding: tried, retry: true)
                else {
                    throw OpenAIError(.upstream, "The node's answer broke off.", code: "upstream_failed")
                }
                served.logger.info("node's answer broke; asking another node", metadata: ["node.id": "\(served.node.short)"])
                served = next
                tried.insert(next.node)
            }
        }
    }

    /// A node's whole answer that is no completion.
    struct NotACompletion: Error, CustomStringConvertible {
        var description: String { "the node's answer is no completion" }
    }

    /// Sent when the node's stream breaks after the client already has a 200.
    static let streamErrorEvent =
        "data: {\"error\":{\"message\":\"The node's stream broke off.\",\"type\":\"upstream_error\",\"param\":null,\"code\":\"upstream_failed\"}}\n\n"
}
