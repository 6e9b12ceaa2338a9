import Foundation
import HTTPTypes
import HearthCore
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat

/// Embeddings: `POST /v1/embeddings` (OpenAI) and Ollama's `POST /api/embed` and `POST /api/embeddings`, routed like
/// completions but only to engines started for them (`ServedModel.embeddings`), metered (prompt tokens only) and
/// receipted like the rest. The answer is whole: a node that breaks off is asked again elsewhere, as for completions.
struct EmbeddingsController {
    let pipeline: CompletionPipeline

    enum Shape {
        case openAI
        /// `/api/embed`: `{model, embeddings: [[…]], prompt_eval_count}`.
        case ollama
        /// `/api/embeddings`: `{embedding: […]}`, one prompt.
        case ollamaLegacy
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/v1/embeddings") { request, context in try await embed(.openAI, request: request, context: context) }
        router.post("/api/embed") { request, context in try await embed(.ollama, request: request, context: context) }
        router.post("/api/embeddings") { request, context in try await embed(.ollamaLegacy, request: request, context: context) }
    }

    func embed(_ shape: Shape, request: Request, context: GatewayRequestContext) async throws -> Response {
        let startedAt = Date()
        let started = ContinuousClock.now
        let json = try await pipeline.readJSON(request, context: context)
        if shape != .openAI, let model = EmbeddingRequest.ollamaModelToLoad(json, legacy: shape == .ollamaLegacy) {
            // Nothing to embed: Ollama loads the model and answers no vectors. Hearth's nodes keep their models
            // loaded; the answer says whether one would embed with it (the refusal a request would get if not).
            if let refusal = pipeline.dispatcher.refusal(.embeddings, model: model, logger: context.logger) { throw OpenAIError(refusal) }
            let answer = EmbeddingRequest.ollamaEmptyAnswer(model: model.rawValue, legacy: shape == .ollamaLegacy)
            return Response(
                status: .ok,
                headers: [.contentType: "application/json; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: answer.serialized()))
            )
        }
        let prepared: EmbeddingRequest
        do {
            prepared = shape == .openAI ? try EmbeddingRequest(body: json) : try EmbeddingRequest.fromOllama(json, legacy: shape == .ollamaLegacy)
        } catch {
            throw OpenAIError(error)
        }
        var served = try await pipeline.open(
            .embeddings,
            model: prepared.model,
            body: prepared.upstreamBody,
            route: request.uri.path,
            context: context,
            startedAt: startedAt
        )
        var tried: Set<NodeID> = [served.node]
        var part = 0
        while true {
            var answer = served.upstream.firstChunk ?? ByteBuffer()
            let complete: Bool
            do {
                let stated = served.upstream.response.contentLength.map { $0 - answer.readableBytes }
                var rest = try await served.upstream.response.body.collect(upTo: UsageBounds.largestWholeAnswer, stated: stated)
                answer.writeBuffer(&rest)
                complete = true
            } catch {
                complete = false
            }
            if complete {
                let decoded = try? JSONValue.parse(answer.readableBytesView)
                let usage = decoded.flatMap(TokenUsage.embedding(in:))
                var headers: HTTPFields = [.hearthNode: served.node.short, .contentType: "application/json"]
                // A 200 that is no list of embeddings (empty when the node's engine broke off) is not the answer.
                guard decoded?["data"]?.arrayValue != nil else {
                    await served.finish(usage: usage, fallbackCompletionTokens: 0, status: .upstreamError)
                    throw OpenAIError(.upstream, "The node's answer was not a list of embeddings.", code: "upstream_failed")
                }
                guard shape != .openAI else {
                    return served.respond(with: answer, headers: headers, usage: usage, fallbackCompletionTokens: 0)
                }
                let nanoseconds = Int64(clamping: (ContinuousClock.now - started).nanoseconds)
                guard let decoded,
                    let translated = EmbeddingRequest.ollamaAnswer(
                        decoded,
                        model: prepared.model,
                        legacy: shape == .ollamaLegacy,
                        durationNanoseconds: nanoseconds,
                        dimensions: prepared.ollamaDimensions
                    )
                else {
                    await served.finish(usage: usage, fallbackCompletionTokens: 0, status: .upstreamError)
                    throw OpenAIError(.upstream, "The node's answer was not a list of embeddings.", code: "upstream_failed")
                }
                headers[.contentType] = "application/json; charset=utf-8"
                return served.respond(
                    with: ByteBuffer(bytes: try JSONEncoder().encode(translated)),
                    headers: headers,
                    usage: usage,
                    fallbackCompletionTokens: 0
                )
            }
            await served.finish(usage: nil, fallbackCompletionTokens: 0, status: .upstreamError)
            part += 1
            guard part <= pipeline.maxContinuations,
                let next = try? await served.openPart(part, endpoint: .embeddings, body: prepared.upstreamBody, excluding: tried, retry: true)
            else {
                throw OpenAIError(.upstream, "The node's answer broke off.", code: "upstream_failed")
            }
            served.logger.info("node's answer broke; asking another node", metadata: ["node.id": "\(served.node.short)"])
            served = next
            tried.insert(next.node)
        }
    }
}
