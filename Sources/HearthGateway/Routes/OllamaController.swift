import Foundation
import HearthCore
import HearthWeb
import Hummingbird
import NIOCore

/// Ollama's API on top of the same nodes: `/api/chat` and `/api/generate` stream NDJSON like Ollama does;
/// `/api/tags`, `/api/show` and `/api/version` describe the models.
struct OllamaController {
    let pipeline: CompletionPipeline
    let registry: NodeRegistry

    /// The Ollama API version Hearth answers like.
    static let compatibleVersion = "0.6.0"

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/api/chat") { request, context in
            try await generate(.chat, request: request, context: context)
        }
        router.post("/api/generate") { request, context in
            try await generate(.generate, request: request, context: context)
        }
        router.get("/api/tags") { _, _ in
            try jsonResponse(["models": .array(registry.readyModels().map { card(for: $0.model).tag })])
        }
        router.get("/api/ps") { _, _ in
            try jsonResponse(["models": .array(registry.readyModels().map { card(for: $0.model).running })])
        }
        router.post("/api/show") { request, context in
            try await show(request: request, context: context)
        }
        router.get("/api/version") { _, _ in
            try jsonResponse(["version": .string(Self.compatibleVersion)])
        }
        // Ollama's model management: a Hearth network's models are its catalog's, loaded by the nodes that serve them,
        // so a client asking to pull, create or delete one is told so rather than that the route does not exist.
        for (method, path) in Self.modelManagement {
            router.on(RouterPath(path), method: method) { _, _ -> Response in
                throw OpenAIError(
                    .notSupported,
                    "Models on a Hearth network come from its catalog and are loaded by the nodes that serve them, so "
                        + "\(path.replacingOccurrences(of: "/:digest", with: "")) has nothing to do here. GET /api/tags lists the models served now.",
                    code: "model_management_unsupported"
                )
            }
        }
    }

    func show(request: Request, context: GatewayRequestContext) async throws -> Response {
        let json = try await pipeline.readJSON(request, context: context)
        guard let name = (json["model"] ?? json["name"])?.stringValue, let id = ModelID(name) else {
            throw OpenAIError(.invalidRequest, "'model' must be a model name.", param: "model")
        }
        guard let served = registry.readyModel(named: id, in: pipeline.dispatcher.catalog)?.model else {
            throw OpenAIError(.notFound, "The model '\(name)' does not exist on this network.", param: "model", code: "model_not_found")
        }
        return try jsonResponse(card(for: served).show)
    }

    /// What the catalog says of a served model, for Ollama's listings.
    func card(for model: ServedModel) -> OllamaModelCard {
        OllamaModelCard(model: model, entry: pipeline.dispatcher.catalog[model.id])
    }

    func generate(_ shape: OllamaResponseWriter.Shape, request: Request, context: GatewayRequestContext) async throws -> Response {
        let startedAt = Date()
        let started = ContinuousClock.now
        let json = try await pipeline.readJSON(request, context: context)
        if Self.asksOnlyToLoad(json, shape: shape), let name = json["model"]?.stringValue, let id = ModelID(name) {
            // Ollama answers an empty prompt (or a chat without messages) by loading the model; Hearth's nodes keep
            // it loaded already. A model that no node serves is a 404, as Ollama answers for a model it does not have.
            guard registry.readyModel(named: id, in: pipeline.dispatcher.catalog) != nil else {
                throw OpenAIError(.notFound, "model '\(name)' not found", param: "model", code: "model_not_found")
            }
            let writer = OllamaResponseWriter(shape: shape, model: name, createdAt: Self.timestamp())
            var line = writer.content("")
            line["done"] = true
            line["done_reason"] = "load"
            return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: .init(byteBuffer: Self.ndjson(line)))
        }
        let prepared: CompletionRequest
        let stream: Bool
        // A raw prompt is a text completion: the model continues it as it is, past its chat template.
        let endpoint: CompletionEndpoint
        do {
            stream = try OllamaTranslation.wantsStream(json)
            let raw = shape == .generate ? try OllamaTranslation.isRaw(json) : false
            endpoint = raw ? .text : .chat
            var streamed: JSONValue
            if raw {
                streamed = try OllamaTranslation.completionBody(fromRawGenerate: json)
            } else if shape == .chat {
                streamed = try OllamaTranslation.chatBody(fromChat: json)
            } else {
                streamed = try OllamaTranslation.chatBody(fromGenerate: json)
            }
            streamed["stream"] = true
            prepared = try CompletionRequest(endpoint: endpoint, body: streamed, limits: pipeline.limits)
        } catch {
            throw OpenAIError(OllamaTranslation.restated(error, for: json))
        }
        let served = try await pipeline.open(
            endpoint,
            model: prepared.model,
            body: prepared.upstreamBody,
            route: shape == .chat ? "/api/chat" : "/api/generate",
            context: context,
            startedAt: startedAt,
            allowDegrade: request.allowsDegrade
        )
        // A smaller model that served instead says its name, as the OpenAI answer's `model` does.
        let writer = OllamaResponseWriter(
            shape: shape,
            model: served.upstream.degradedFrom == nil ? prepared.model.rawValue : served.upstream.model.rawValue,
            createdAt: Self.timestamp()
        )
        let relay = OllamaRelay(writer: writer, started: started)
        let opened = ContinuingStream(served, endpoint: endpoint, body: prepared.upstreamBody, maxContinuations: pipeline.maxContinuations)
        guard stream else {
            var outcome = await relay.collect(opened)
            guard outcome.status == .ok else {
                await outcome.stream.finish(status: outcome.status)
                throw OpenAIError(.upstream, "The node's answer broke off.", code: "upstream_failed")
            }
            var headers: HTTPFields = [.contentType: "application/json", .hearthNode: served.node.short]
            served.addDegradation(to: &headers)
            return outcome.stream.respond(with: Self.ndjson(outcome.finalLine), headers: headers)
        }
        var headers: HTTPFields = [.contentType: "application/x-ndjson", .hearthNode: served.node.short]
        served.addDegradation(to: &headers)
        headers[.cacheControl] = "no-cache"
        let metrics = pipeline.metrics
        let settlements = pipeline.settlements
        // A client that reset its connection before the head could be written: its node is asked to stop.
        let unwritten: @Sendable () -> Void = { opened.cancelBeside(settlements) }
        return Response(
            status: .ok,
            headers: headers,
            body: .owing(ifNeverRun: unwritten) { bodyWriter in
                metrics.streamStarted()
                defer { metrics.streamEnded() }
                var outcome = await relay.stream(opened, to: &bodyWriter)
                // A client that went away was metered when its stream was cancelled.
                guard outcome.status != .clientClosed else { return }
                do {
                    if outcome.status == .ok { try await bodyWriter.write(Self.ndjson(outcome.finalLine)) }
                    // As Ollama ends a stream that failed after its first line: a line with the error.
                    if outcome.status == .upstreamError { try await bodyWriter.write(Self.ndjson(["error": "The node's stream broke off."])) }
                    try await bodyWriter.finish(nil)
                } catch {
                    outcome.status = .clientClosed
                }
                let ended = outcome
                await settlements.settle {
                    var finished = ended
                    await finished.stream.finish(status: finished.status)
                }
            }
        )
    }

    /// A request with nothing to answer, which Ollama's clients send to load a model before use: `/api/generate`
    /// without a prompt, `/api/chat` without messages. A body Ollama could not read (`stream: "no"`) is not one: it
    /// goes on to be refused.
    static func asksOnlyToLoad(_ json: JSONValue, shape: OllamaResponseWriter.Shape) -> Bool {
        guard (try? OllamaTranslation.wantsStream(json)) != nil else { return false }
        return switch shape {
        case .generate: json["prompt"] == nil || json["prompt"] == ""
        case .chat: json["messages"] == nil || json["messages"] == .null || json["messages"] == .array([])
        }
    }

    /// Ollama's routes that manage the model store.
    static let modelManagement: [(HTTPRequest.Method, String)] = [
        (.post, "/api/pull"), (.post, "/api/push"), (.post, "/api/create"), (.post, "/api/copy"), (.delete, "/api/delete"),
        (.head, "/api/blobs/:digest"), (.post, "/api/blobs/:digest"),
    ]

    static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }

    static func ndjson(_ line: JSONValue) -> ByteBuffer {
        var buffer = ByteBuffer(bytes: (try? JSONEncoder().encode(line)) ?? Data())
        buffer.writeString("\n")
        return buffer
    }

}

/// Encodes a JSON value as an `application/json` response.
func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(
        status: status,
        headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(value)))
    )
}
