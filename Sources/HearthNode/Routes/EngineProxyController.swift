import Foundation
import HTTPTypes
import HearthCore
import HearthMesh
import HearthWeb
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1
import NIOPosix

/// The node's API for the gateway: completions are passed to the engine serving the model and streamed back
/// as they come. When the gateway goes away, the engine request is dropped, which stops the generation.
struct EngineProxyController {
    let host: EngineHost
    let load: NodeLoad
    let maxBodyBytes: Int
    /// Signs a receipt for every answer, sent as the `hearth-receipt` trailer; `nil` sends none.
    let receipts: ReceiptSigner?
    /// The answers under way, which the gateway may cancel by request id.
    let inFlight: InFlightRequests
    /// The node's pool work: a request naming a pool goes to that pool's head.
    var pools: PoolWorker? = nil
    /// The owner started every engine with embeddings (`--embeddings`).
    var embeddingsForAll = false
    /// Embeddings go to each engine one request at a time (see `EmbeddingCall`).
    let embeddingGates = SerialGates()

    /// Headers the gateway sends with each request, named once rather than per request.
    static let requestIDHeader = HTTPField.Name(LinkProtocol.Header.requestID)!
    static let consumerHeader = HTTPField.Name(LinkProtocol.Header.consumer)!
    static let modelSHA256Header = HTTPField.Name(LinkProtocol.Header.modelSHA256)!
    static let poolHeader = HTTPField.Name(LinkProtocol.Header.pool)!
    static let prefillHeader = HTTPField.Name(LinkProtocol.Header.prefill)!

    /// What the node reads of a request's body: its model, whether it streams, its `max_tokens`, a continuation.
    private struct RequestFields {
        var json: JSONValue
        var model: String?
        var stream: Bool?
        var maxTokens: Int?
        var continuation: JSONValue?

        init?(_ body: ByteBuffer) {
            guard let json = try? JSONValue.parse(body.readableBytesView) else { return nil }
            self.json = json
            model = json["model"]?.stringValue
            stream = json["stream"]?.boolValue
            maxTokens = json["max_tokens"]?.integerValue.flatMap { Int(exactly: $0) }
            continuation = json[Continuation.field]
        }
    }

    /// The routes relayed to an engine (each registered by `addRoutes`).
    static let enginePaths: Set<String> = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]

    /// A request for an engine route: relayed without blocking, so it may run on its link stream's event loop.
    static func isEngineCall(_ request: Request) -> Bool {
        request.method == .post && enginePaths.contains(request.uri.path)
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/health") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        for path in Self.enginePaths {
            router.post(RouterPath(path)) { request, context in
                try await forward(request, path: path, context: context)
            }
        }
    }

    func forward(_ request: Request, path: String, context: BasicRequestContext) async throws -> Response {
        let body = try await request.body.collect(upTo: maxBodyBytes)
        let fields = RequestFields(body)
        guard let name = fields?.model else {
            return Self.error(APIFailure(.invalidRequest, "The body must be JSON with a 'model' string.", param: "model"))
        }
        let engine: EngineHandle
        let shares: PoolShares?
        if let asked = request.headers[Self.poolHeader] {
            guard let pool = PoolID(asked), let head = pools?.head(of: pool), head.engine.serves(name) else {
                // Not the client's mistake: the gateway routed on a report the node has moved past. 503, so it tries elsewhere.
                return Self.error(APIFailure(.unavailable, "This node heads no pool \(asked) for '\(name)' now.", code: "pool_head_gone"))
            }
            engine = head.engine
            shares = head.shares
        } else if let own = host.engine(named: name) {
            engine = own
            shares = nil
        } else {
            return Self.error(APIFailure(.notFound, "This node does not serve '\(name)'.", param: "model", code: "model_not_found"))
        }
        if path == CompletionEndpoint.embeddings.rawValue,
            shares != nil || !engine.spec.servesEmbeddings(forAll: embeddingsForAll)
        {
            return Self.error(
                APIFailure(.invalidRequest, "This node serves '\(name)' without embeddings.", param: "model", code: "embeddings_not_served")
            )
        }
        // The gateway names the file it means by the catalog's hash; this node serves no other.
        if let asked = request.headers[Self.modelSHA256Header], asked != engine.spec.sha256.hex {
            return Self.error(
                APIFailure(
                    .unavailable,
                    "The gateway asks for \(name) with sha256 \(asked); this node's file has \(engine.spec.sha256.hex).",
                    code: "model_hash_mismatch"
                )
            )
        }
        // Loads the model first when it is in standby (evicting idle ones); the engine counts this request as its
        // use until the answer ends.
        let address: EngineAddress
        do {
            address = try await host.acquire(engine)
        } catch {
            return Self.error(error)
        }
        if path == CompletionEndpoint.embeddings.rawValue {
            return await embed(body, engine: engine, address: address, request: request)
        }
        let call: EngineCall
        do {
            if let name = address.backendName, let json = fields?.json {
                call = try EngineCall.backend(path: path, body: json, name: name, model: engine.spec.id)
            } else if fields?.stream == true, let port = address.port, let json = fields?.json {
                // A stream's events are marked with their token ids, so that the gateway can continue it elsewhere.
                call = try await EngineCall.stream(path: path, body: json, port: port)
            } else if fields?.continuation != nil {
                throw APIFailure(.invalidRequest, "Only a stream can be continued.", param: Continuation.field, code: "not_continuable")
            } else {
                call = .unchanged(path: path, body: body)
            }
        } catch {
            engine.end()
            return Self.error(error as? APIFailure ?? APIFailure(.server, "\(error)"))
        }
        let upstream: EngineRequest
        do {
            upstream = try Self.engineRequest(call, address: address)
        } catch {
            engine.end()
            return Self.error(error)
        }
        if let rewriter = call.rewriter {
            return await stream(
                upstream,
                call: call,
                rewriter: rewriter,
                engine: engine,
                request: request,
                fields: fields,
                shares: shares,
                logger: context.logger
            )
        }
        context.logger.debug("forwarding to engine", metadata: ["gw.request.id": "\(request.headers[Self.requestIDHeader] ?? "-")"])
        // Read on the link stream's event loop, where this task runs (`EngineAnswer`).
        let answer = EngineAnswer(on: LinkStream.channel?.eventLoop ?? MultiThreadedEventLoopGroup.singleton.next())
        load.begin()
        answer.send(upstream)
        let head: HTTPResponseHead
        do {
            head = try await answer.responseHead()
        } catch {
            load.end()
            engine.end()
            return engineDidNotAnswer(error, engine: engine, logger: context.logger)
        }
        guard head.status == .ok else {
            // An error answer is short; it is read whole and restated for the gateway (see `EngineRefusal`).
            let body = (try? await answer.wholeBody()) ?? ByteBuffer()
            load.end()
            engine.end()
            context.logger.debug("engine refused the request", metadata: ["node.model": "\(name)", "http.status": "\(head.status.code)"])
            return Self.error(EngineRefusal.failure(status: Int(head.status.code), body: body))
        }
        var headers = HTTPFields()
        headers[.contentType] = head.headers.first(name: "content-type") ?? "application/json"
        let receipt = receiptDraft(request, spec: engine.spec, maxTokens: fields?.maxTokens, pool: shares)
        // The answer is read whole before its head is written, so that the head states its length: the gateway then
        // answers its client at the body's last byte, while this node still signs the receipt that follows it.
        // A gateway's cancellation stops the engine at once, even while it is still generating, and the answer still
        // ends with a receipt; a reset of the link stream cancels this task (`LinkResponder`), which drops the
        // engine's request the same way.
        let inFlight = self.inFlight
        let cancellation = receipt.requestID.map { inFlight.open($0) }
        cancellation?.onCancel { answer.cancel() }
        var outcome = Receipt.Outcome.ok
        var answerBody = ByteBuffer()
        do {
            answerBody = try await answer.wholeBody()
            if cancellation?.isCancelled == true { outcome = .cancelled }
        } catch {
            outcome = cancellation?.isCancelled == true ? .cancelled : .engineError
        }
        answer.cancel()
        load.end()
        engine.end()
        // The answer is in flight until its last part is written: a draining node closes its link once none is.
        let written: @Sendable () -> Void = {
            if let requestID = receipt.requestID, let cancellation { inFlight.close(requestID, cancellation) }
        }
        // The gateway reset the stream: nothing can be written to it, not even a receipt.
        if Task.isCancelled {
            written()
            throw CancellationError()
        }
        if let answerModel = call.answerModel { answerBody = EngineCall.renamed(answerBody, model: answerModel) }
        var tap = UsageTap(streaming: false)
        tap.observe(answerBody)
        let (usage, ended) = (tap.usage, outcome)
        // Only a whole answer is passed on: the gateway takes an empty 200 as a broken answer and asks another node.
        let answered = outcome == .ok ? answerBody : ByteBuffer()
        return Response(
            status: .ok,
            headers: headers,
            body: .owing(contentLength: answered.readableBytes, ifNeverRun: written) { writer in
                defer { written() }
                if answered.readableBytes > 0 { try await writer.write(answered) }
                // This task runs on the link's event loop, where a write's flush waits for a task the loop runs after
                // this one (`LinkFlushCoalescer`): yielding puts the rest of this task behind that flush, so the body
                // leaves before the receipt is signed.
                await Task.yield()
                try await writer.finish(receipt.trailers(usage: usage, outcome: ended))
            }
        )
    }

    /// The engine's request for `call`. The deadline is a ceiling for a runaway engine; the gateway's reset cancels
    /// the request much sooner.
    private static func engineRequest(_ call: EngineCall, address: EngineAddress) throws(APIFailure) -> EngineRequest {
        guard let endpoint = address.endpoint else {
            throw APIFailure(.server, "The engine's address is not an http(s) URL.")
        }
        var request = EngineRequest(
            endpoint: endpoint,
            path: call.path,
            headers: address.requestHeaders(streaming: call.rewriter != nil),
            body: call.body,
            deadline: .now() + .hours(6)
        )
        request.tls = address.trust?.context
        request.idleLimit = address.idleLimit
        return request
    }

    /// A stream: relayed on the link stream's event loop (`EngineRelay`), its receipt the trailer after its last event.
    private func stream(
        _ upstream: EngineRequest,
        call: EngineCall,
        rewriter: EngineStreamRewriter,
        engine: EngineHandle,
        request: Request,
        fields: RequestFields?,
        shares: PoolShares?,
        logger: Logger
    ) async -> Response {
        guard let link = LinkStream.channel else {
            engine.end()
            return Self.error(APIFailure(.server, "A stream is relayed only over a gateway link."))
        }
        // An owner's server may ignore `max_tokens`; a managed llama-server does not.
        let eventLimit = engine.backend == nil ? nil : fields?.maxTokens.map { UsageBounds(requestBytes: 0, maxTokens: $0).events }
        let relay = EngineRelay(to: link, rewriter: rewriter, eventLimit: eventLimit)
        let load = self.load
        load.begin()
        relay.whenEnded {
            load.end()
            engine.end()
        }
        relay.send(upstream)
        let head: HTTPResponseHead
        do {
            head = try await relay.responseHead()
        } catch {
            return engineDidNotAnswer(error, engine: engine, logger: logger)
        }
        guard head.status == .ok else {
            return Self.error(EngineRefusal.failure(status: Int(head.status.code), body: await relay.refusalBody()))
        }
        var headers = HTTPFields()
        headers[.contentType] = EngineRelay.answersWhole(head) ? "text/event-stream" : head.headers.first(name: "content-type") ?? "text/event-stream"
        if let prefill = call.prefill { headers[Self.prefillHeader] = String(prefill) }
        // An owner's server that reports no usage is metered as the gateway meters it: one token per streamed event.
        let meteredByEvents = engine.backend != nil
        let inFlight = self.inFlight
        let receipt = receiptDraft(request, spec: engine.spec, maxTokens: fields?.maxTokens, pool: shares)
        let requestID = receipt.requestID
        // The link stream's close stops the relay too (`EngineRelay`); this covers a head that could not be written.
        let unwritten: @Sendable () -> Void = { relay.cancel() }
        return Response(
            status: .ok,
            headers: headers,
            body: .owing(ifNeverRun: unwritten) { writer in
                let cancellation = requestID.map { inFlight.open($0, stream: true) }
                cancellation?.onCancel { relay.cancel() }
                defer {
                    if let requestID, let cancellation { inFlight.close(requestID, cancellation) }
                }
                let ending = await relay.relay(to: link)
                // The gateway reset the stream: no receipt can follow.
                if ending.linkGone { throw CancellationError() }
                if relay.overran {
                    logger.warning(
                        "the owner's server went past the request's max_tokens: its request was dropped",
                        metadata: ["node.model": "\(engine.spec.id)"]
                    )
                } else if let failure = ending.failure,
                    failure is SSEEventSplitter.EventTooLarge || failure is EngineStreamRewriter.WholeAnswerTooLong
                        || failure is EngineStreamRewriter.WholeAnswerUnreadable
                {
                    logger.warning("the engine's stream broke: \(failure)", metadata: ["node.model": "\(engine.spec.id)"])
                }
                let outcome: Receipt.Outcome =
                    if cancellation?.isCancelled == true { .cancelled } else if ending.failure != nil { .engineError } else { .ok }
                // The receipt rides as a trailer after the last byte: one exchange, nothing stored on the node. A
                // stream stopped, or whose engine broke off, is worth what it relayed, counted as the gateway counts it.
                let usage = outcome == .ok && !meteredByEvents ? ending.tap.usage : (ending.tap.usage ?? ending.tap.partialUsage)
                try await writer.finish(receipt.trailers(usage: usage, outcome: outcome, handover: cancellation?.isHandover == true))
            }
        )
    }

    /// What the receipt for `request` will name, gathered as it comes in.
    private func receiptDraft(_ request: Request, spec: ModelSpec, maxTokens: Int?, pool: PoolShares?) -> ReceiptDraft {
        ReceiptDraft(
            signer: receipts,
            requestID: request.headers[Self.requestIDHeader],
            consumer: request.headers[Self.consumerHeader] ?? "anonymous",
            spec: spec,
            maxTokens: maxTokens ?? 0,
            pool: pool
        )
    }

    /// The engine's request failed before its head: 502, so the gateway tries elsewhere.
    private func engineDidNotAnswer(_ error: any Error, engine: EngineHandle, logger: Logger) -> Response {
        // A cancelled wait is the gateway's reset (its client left), not the engine's fault.
        logger.log(
            level: Task.isCancelled ? .debug : .warning,
            "engine did not answer",
            metadata: ["node.model": "\(engine.spec.id)", "error": "\(error)"]
        )
        // The owner's server stopped since the last look: the next one, now, takes its models off the routes.
        if engine.backend != nil, BackendMonitorService.refusesConnections(error) { host.backendLooks.notify() }
        return Self.error(APIFailure(.upstream, "The engine did not answer: \(error)", code: "engine_failed"))
    }

    /// An embeddings request: answered whole, with its receipt (prompt tokens only) as the trailer.
    private func embed(_ body: ByteBuffer, engine: EngineHandle, address: EngineAddress, request: Request) async -> Response {
        load.begin()
        defer {
            load.end()
            engine.end()
        }
        let receipt = receiptDraft(request, spec: engine.spec, maxTokens: 0, pool: nil)
        let result: (answer: JSONValue, usage: TokenUsage)
        do {
            guard let json = try? JSONValue.parse(body.readableBytesView) else {
                throw APIFailure(.invalidRequest, "The body must be JSON.", code: "invalid_json")
            }
            let gate = embeddingGates.gate(for: engine.spec.sha256.hex + engine.spec.id.rawValue)
            // The owner's server stopped since the last look: the next one, now, takes its models off the routes.
            let (looks, owners) = (host.backendLooks, engine.backend != nil)
            result = try await EmbeddingCall(address: address, gate: gate) { if owners { looks.notify() } }.run(body: json)
        } catch {
            return Self.error(error as? APIFailure ?? APIFailure(.server, "\(error)"))
        }
        let bytes = ByteBuffer(bytes: (try? JSONEncoder().encode(result.answer)) ?? Data())
        let usage = result.usage
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: ResponseBody(contentLength: bytes.readableBytes) { writer in
                try await writer.write(bytes)
                // As a whole completion's: the body leaves before the receipt is signed.
                await Task.yield()
                try await writer.finish(receipt.trailers(usage: usage, outcome: .ok))
            }
        )
    }

    /// `failure` in the OpenAI envelope, with the status and type from HearthCore's table (as the gateway renders it).
    static func error(_ failure: APIFailure) -> Response {
        Response(
            status: .init(code: failure.status),
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: failure.body.json))
        )
    }
}

/// Requests the node is serving right now.
final class NodeLoad: Sendable {
    /// The requests, counted once: for the node's report and drain, and for `IdleCodeRelease`.
    let activity = Activity()
    func begin() { activity.begin() }
    func end() { activity.end() }
    var inFlight: Int { activity.inFlight }
}
