import Foundation
import HTTPTypes
import HearthCore
import HearthWeb
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat

/// The steps every completion request shares, whichever API it came through: read the body, open a node,
/// meter the result.
struct CompletionPipeline: Sendable {
    let dispatcher: Dispatcher
    let database: GatewayDatabase
    /// The gateway's key, which countersigns credited receipts.
    let gatewayKey: IdentityKey
    let quotas: QuotaBook
    let metrics: GatewayMetrics
    let maxBodyBytes: Int
    let limits: RequestLimits
    /// How many times one stream may be continued on another node after its node broke (0: never).
    var maxContinuations = 2
    /// Checks a share of the answers on another node (`nil`: no checks).
    var spotChecker: SpotChecker?
    /// Every request may be served by a smaller model of its family when its own has no capacity (`--allow-degrade`).
    var degradeByDefault = false
    /// The metering of answers the clients already have, run beside their connections.
    var settlements = Settlements()

    /// Reads and parses a JSON request body.
    /// - Throws: `NIOTooManyBytesError` for an oversized body (rendered as 413), `OpenAIError` 400 for a body that is
    ///   not JSON.
    func readJSON(_ request: Request, context: GatewayRequestContext) async throws -> JSONValue {
        if let body = context.body { return body }
        let buffer = try await request.body.collect(upTo: maxBodyBytes)
        return try Self.parse(buffer)
    }

    /// A client's JSON body, nesting bounded (`JSONValue.parse`).
    static func parse(_ buffer: ByteBuffer) throws(OpenAIError) -> JSONValue {
        do {
            return try JSONValue.parse(buffer.readableBytesView)
        } catch .tooDeep(let limit) {
            throw OpenAIError(.invalidRequest, "The request body nests arrays and objects deeper than \(limit) levels.", code: "invalid_json")
        } catch {
            throw OpenAIError(.invalidRequest, "The request body is not valid JSON.", code: "invalid_json")
        }
    }

    /// The most a request may cost, reserved from its caller's bucket when it is let in: its `max_tokens` (which
    /// `CompletionRequest` sets on every completion) and its prompt, which only the node's tokenizer knows. The
    /// estimate errs high: a token per two bytes of the request's text (English runs about four), and 64 for what a
    /// chat template adds (SmolLM2's default system prompt is about 20 tokens, and each message a few more).
    static func mostTokens(of body: JSONValue) -> Int {
        func textBytes(_ value: JSONValue) -> Int {
            switch value {
            case .string(let text): text.utf8.count
            case .array(let items): items.reduce(0) { $0 + textBytes($1) }
            case .object(let members): members.values.reduce(0) { $0 + textBytes($1) }
            default: 0
            }
        }
        let completion = Int(clamping: body["max_tokens"]?.integerValue ?? 0)
        return completion + textBytes(body) / 2 + 64
    }

    /// Opens the request on a node. A dispatch failure, or a node refusing the request (4xx), is recorded and thrown
    /// as an `OpenAIError`; what returns is a request the node is serving.
    func open(
        _ endpoint: CompletionEndpoint,
        model: ModelID,
        body: JSONValue,
        route: String,
        context: GatewayRequestContext,
        startedAt: Date,
        allowDegrade: Bool = false
    ) async throws -> ServedRequest {
        let quota = await quotas.admit(caller: context.caller, address: context.clientAddress, reserving: Self.mostTokens(of: body))
        guard quota.allowed else {
            metrics.quotaRefused(identity: context.caller.account == nil ? "anonymous" : "account")
            var headers = HTTPFields()
            headers[.retryAfter] = String(quota.retryAfterSeconds)
            headers[.init("X-RateLimit-Limit-Tokens")!] = String(quota.limit)
            headers[.init("X-RateLimit-Remaining-Tokens")!] = String(quota.remaining)
            headers[.init("X-RateLimit-Reset-Tokens")!] = "\(quota.resetSeconds)s"
            headers[.init("X-Hearth-Standing")!] = String(Int(quota.standing.rounded()))
            throw OpenAIError(
                APIFailure(
                    .rateLimited,
                    "You have used your token quota for now (\(quota.limit) tokens per hour; it refills in \(quota.retryAfterSeconds) s). "
                        + "Run a node and certify it with your account (hearth keys certify-device) to earn more headroom: "
                        + "tokens your nodes serve raise your quota.",
                    code: "token_quota_exceeded"
                ),
                headers: headers
            )
        }
        let upstream: OpenedUpstream
        do {
            upstream = try await dispatcher.open(
                endpoint: endpoint,
                model: model,
                body: body,
                requestID: context.id,
                consumer: context.caller.consumerName,
                logger: context.logger,
                allowDegrade: allowDegrade || degradeByDefault,
                clientWatch: context.clientWatch
            )
        } catch {
            await record(
                UsageRecord(
                    requestID: context.id,
                    route: route,
                    model: recordedName(model),
                    nodeID: nil,
                    promptTokens: 0,
                    completionTokens: 0,
                    status: error.clientLeft ? RequestOutcome.clientClosed.stored : String(error.failure.status),
                    startedAt: startedAt,
                    firstByteMilliseconds: nil,
                    durationMilliseconds: Date().timeIntervalSince(startedAt) * 1000,
                    consumer: context.caller.consumerName,
                    account: context.caller.account?.rawValue
                ),
                quota: quota.charge,  // no tokens spent: what was reserved goes back
                logger: context.logger
            )
            throw OpenAIError(error)
        }
        let served = ServedRequest(
            pipeline: self,
            upstream: upstream,
            route: route,
            model: upstream.model.rawValue,
            requestID: context.id,
            rootID: context.id,
            consumer: context.caller.consumerName,
            account: context.caller.account,
            quota: quota.charge,
            startedAt: startedAt,
            logger: context.logger
        )
        database.markInFlight(served.usageRecord(promptTokens: 0, completionTokens: 0, status: .inFlight), logger: context.logger)
        guard upstream.response.status < 400 else {
            let refusal = await nodeRefusal(upstream)
            await served.finish(usage: nil, fallbackCompletionTokens: 0, status: .refused(status: upstream.response.status))
            throw refusal
        }
        return served
    }

    /// The name a refused request is recorded under: the catalog's id when the name resolves to one (a name without
    /// quantization is stored as the entry it means), else what the client sent, cut to a bounded length.
    private func recordedName(_ model: ModelID) -> String {
        dispatcher.catalog.resolve(model, includeUnpinned: true)?.id.rawValue ?? String(model.rawValue.prefix(128))
    }

    /// A node's 4xx answer as the gateway's error envelope, keeping the node's message.
    private func nodeRefusal(_ upstream: OpenedUpstream) async -> OpenAIError {
        var body = upstream.firstChunk ?? ByteBuffer()
        if var rest = try? await upstream.response.body.collect(upTo: 1 << 16) { body.writeBuffer(&rest) }
        let error = (try? JSONValue.parse(body.readableBytesView))?["error"]
        let message = error?["message"]?.stringValue ?? "The node refused the request."
        let kind: APIFailure.Kind =
            switch upstream.response.status {
            case 404: .notFound
            case 413: .requestTooLarge
            case 429: .rateLimited
            default: .invalidRequest
            }
        return OpenAIError(APIFailure(kind, message, param: error?["param"]?.stringValue, code: error?["code"]?.stringValue ?? "node_rejected"))
    }

    /// Stores a usage record, with its receipt's settlement in the same transaction, and counts its tokens; a
    /// storage failure is logged, never shown to the client.
    ///
    /// Only served requests count in the token metrics: their model name matched one a node announced, so the
    /// `model` label stays bounded. A refused request's name is whatever the client sent.
    func record(_ usage: UsageRecord, settling proposed: ReceiptSettlement = .none, quota: QuotaCharge? = nil, logger: Logger) async {
        var settlement = proposed
        do {
            let registry = dispatcher.registry
            let row = try await database.record(
                usage,
                settling: proposed,
                quota: quota,
                gateway: gatewayKey,
                reciprocity: quotas.reciprocity,
                accounts: { registry.account(of: $0) }
            )
            // A credit that appended nothing was refused in the transaction: the node's account revoked the device.
            if case .credit(_, let signed) = proposed, row == nil {
                let (reason, detail) = GatewayDatabase.revokedDevice
                settlement = .refuse(reason: reason, detail: detail, signed: signed)
            }
        } catch {
            logger.error("could not store usage record", metadata: ["error": "\(error)"])
        }
        if usage.nodeID != nil {
            metrics.tokens(model: usage.model, prompt: usage.promptTokens, completion: usage.completionTokens)
        }
        var contributed = 0
        if case .credit(let receipt, _) = settlement { contributed = receipt.promptTokens + receipt.completionTokens }
        metrics.reciprocity(
            contributed: contributed,
            consumed: usage.nodeID == nil ? 0 : usage.promptTokens + usage.completionTokens,
            identity: usage.account == nil ? "anonymous" : "account"
        )
        switch settlement {
        case .credit: metrics.receipt(credited: true)
        case .refuse(let reason, let detail, _):
            metrics.receipt(credited: false, reason: reason)
            if let node = usage.nodeID.flatMap(NodeID.init) { dispatcher.registry.receiptRefused(by: node) }
            logger.warning("receipt refused", metadata: ["node.id": "\(usage.nodeID ?? "-")", "receipt.reason": "\(reason)", "detail": "\(detail)"])
        case .none: break
        }
    }
}

/// A request a node is serving. `finish` must be called once, after the client has its response: it releases the
/// node and meters the request (the SQLite write stays off the response's critical path).
///
/// A class: its fields (the pipeline, the node's opened response, the caller's names) come to 824 bytes, and a
/// stream's state holds it through every async frame of its relay and its settlement, where each copy of a struct
/// stays for the stream's life (6.9 KiB of task memory per held stream in all, `heaptrack`).
final class ServedRequest: Sendable {
    let pipeline: CompletionPipeline
    let upstream: OpenedUpstream
    let route: String
    let model: String
    /// The id the node gets (`<id>.<part>` for a later part), and the client's request id.
    let requestID: String
    let rootID: String
    let consumer: String
    /// The account charged for the request, and the quota bucket it drew from.
    let account: NodeID?
    let quota: QuotaCharge
    let startedAt: Date
    let logger: Logger

    init(
        pipeline: CompletionPipeline,
        upstream: OpenedUpstream,
        route: String,
        model: String,
        requestID: String,
        rootID: String,
        consumer: String,
        account: NodeID?,
        quota: QuotaCharge,
        startedAt: Date,
        logger: Logger
    ) {
        self.pipeline = pipeline
        self.upstream = upstream
        self.route = route
        self.model = model
        self.requestID = requestID
        self.rootID = rootID
        self.consumer = consumer
        self.account = account
        self.quota = quota
        self.startedAt = startedAt
        self.logger = logger
    }

    var node: NodeID { upstream.node }

    /// A 200 response carrying a whole body (a request that does not stream); the request is metered once the client
    /// has the body, or as `client_closed` if it went away first.
    func respond(with body: ByteBuffer, headers: HTTPFields, usage: TokenUsage?, fallbackCompletionTokens: Int) -> Response {
        .whole(body, headers: headers, settlements: pipeline.settlements) { status in
            await self.finish(usage: usage, fallbackCompletionTokens: fallbackCompletionTokens, status: status)
        }
    }

    /// The client went away mid-stream: asks the node to stop the engine, then reads what the node still sends (for at
    /// most `cancelDrainLimit`) so that its stream ends with a receipt for the work done, which `finish` settles.
    /// A node that does not end its stream in time is reset, and earns nothing for the request.
    func cancelAndDrain(_ reader: inout SSEEventReader, tally: inout StreamTokenCount) async {
        await pipeline.dispatcher.transport.cancel(requestID: requestID, on: upstream.node)
        let draining = (reader, tally)
        let drained: (SSEEventReader, StreamTokenCount)? = await withTaskGroup(of: (SSEEventReader, StreamTokenCount)?.self) { group in
            group.addTask {
                var (reader, tally) = draining
                while let event = try? await reader.next() { _ = event.withUnsafeReadableBytes { tally.observe(bytes: $0) } }
                return (reader, tally)
            }
            group.addTask {
                try? await Task.sleep(for: Self.cancelDrainLimit)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if let drained { (reader, tally) = drained }
    }

    /// How long a cancelled stream may take to end with its receipt.
    static let cancelDrainLimit: Duration = .seconds(5)

    /// Opens part `part` of this request on another node serving the same file: the continuation of a broken stream
    /// (`ContinuingStream`), or a whole answer asked again. The part is its own request to the node (`<id>.<part>`), so
    /// that its receipt and usage row are its own.
    func openPart(_ part: Int, endpoint: CompletionEndpoint, body: JSONValue, excluding: Set<NodeID>, retry: Bool) async throws -> ServedRequest {
        let partID = "\(rootID).\(part)"
        // Sent now: the node's receipt may not say it started before this.
        let sentAt = Date()
        let upstream = try await pipeline.dispatcher.open(
            endpoint: endpoint,
            model: upstream.model,
            body: body,
            requestID: partID,
            consumer: consumer,
            logger: logger,
            excluding: excluding,
            sameFile: upstream.modelSHA256,
            retry: retry
        )
        let next = ServedRequest(
            pipeline: pipeline,
            upstream: upstream,
            route: route,
            model: model,
            requestID: partID,
            rootID: rootID,
            consumer: consumer,
            account: account,
            quota: quota,
            startedAt: sentAt,
            logger: logger
        )
        pipeline.database.markInFlight(next.usageRecord(promptTokens: 0, completionTokens: 0, status: .inFlight), logger: logger)
        guard upstream.response.status < 400 else {
            await next.finish(usage: nil, fallbackCompletionTokens: 0, status: .refused(status: upstream.response.status))
            throw DispatchFailure(APIFailure(.upstream, "The node refused the continuation (HTTP \(upstream.response.status))."))
        }
        return next
    }

    /// Releases the node and meters the request: `usage` is what the node's receipt is checked against, `charge` what
    /// the client is charged (the same, but for a continued stream's later parts).
    func finish(usage: TokenUsage?, charge: TokenUsage? = nil, fallbackCompletionTokens: Int, status: RequestOutcome) async {
        // A node's pace steers routing: it is not taken from counts past what the request allowed.
        let tokens = min(usage?.completionTokens ?? fallbackCompletionTokens, upstream.bounds.completionTokens)
        let pace = status == .ok && tokens >= 2 ? (ContinuousClock.now - upstream.firstByteAt).seconds / Double(tokens - 1) : nil
        pipeline.dispatcher.finish(upstream, broken: status == .upstreamError, pace: pace)
        let firstByte = upstream.firstByteAt - upstream.startedAt
        pipeline.metrics.timeToFirstToken(model: model, duration: firstByte)
        let settlement = ReceiptClerk.settle(
            trailer: await upstream.response.body.trailer(LinkProtocol.receiptTrailer),
            upstream: upstream,
            requestID: requestID,
            consumer: consumer,
            gateway: pipeline.gatewayKey.nodeID,
            usage: usage,
            status: status,
            sentAt: startedAt,
            endedAt: Date()
        )
        // Never more than the request could make, whatever the node reported (`UsageBounds`).
        let charged = upstream.bounds.clamped(
            charge ?? usage ?? TokenUsage(promptTokens: 0, completionTokens: fallbackCompletionTokens)
        )
        let (promptTokens, completionTokens) = (charged.promptTokens, charged.completionTokens)
        var charge = quota
        charge.tokens = promptTokens + completionTokens
        await pipeline.record(
            usageRecord(promptTokens: promptTokens, completionTokens: completionTokens, status: status, firstByte: firstByte),
            settling: settlement,
            quota: charge,
            logger: logger
        )
    }

    /// This request's usage row as of now: the in-flight note when it starts, the metered row when it ends.
    func usageRecord(promptTokens: Int, completionTokens: Int, status: RequestOutcome, firstByte: Duration? = nil) -> UsageRecord {
        UsageRecord(
            requestID: requestID,
            route: route,
            model: model,
            nodeID: upstream.node.rawValue,
            promptTokens: promptTokens,
            completionTokens: completionTokens,
            status: status.stored,
            startedAt: startedAt,
            firstByteMilliseconds: firstByte?.milliseconds,
            durationMilliseconds: Date().timeIntervalSince(startedAt) * 1000,
            consumer: consumer,
            account: account?.rawValue
        )
    }
}

extension ServedRequest {
    /// `X-Hearth-Degraded-From` and `X-Hearth-Served-Model` when a smaller model served instead of the one asked for.
    func addDegradation(to headers: inout HTTPFields) {
        guard let asked = upstream.degradedFrom else { return }
        headers[HTTPField.Name(Degradation.degradedFromHeader)!] = asked.rawValue
        headers[HTTPField.Name(Degradation.servedModelHeader)!] = upstream.model.rawValue
    }
}

extension Request {
    /// Whether the client allows a smaller model of the same family (`X-Hearth-Allow-Degrade: 1`).
    var allowsDegrade: Bool {
        let value = headers[HTTPField.Name(Degradation.header)!]?.lowercased()
        return value == "1" || value == "true"
    }
}

extension Response {
    /// A 200 response carrying `body` whole; `then` gets `ok` once the client has it, or `client_closed` if it went
    /// away first (the request is metered then, beside the connection: `settlements`).
    static func whole(
        _ body: ByteBuffer,
        headers: HTTPFields,
        settlements: Settlements,
        then: @escaping @Sendable (RequestOutcome) async -> Void
    ) -> Response {
        // A client that reset its connection before the head could be written still had the node's work done.
        let unwritten: @Sendable () -> Void = { settlements.begin { await then(.clientClosed) } }
        return Response(
            status: .ok,
            headers: headers,
            body: .owing(contentLength: body.readableBytes, ifNeverRun: unwritten) { writer in
                var status = RequestOutcome.ok
                do {
                    try await writer.write(body)
                    try await writer.finish(nil)
                } catch {
                    status = .clientClosed
                }
                let outcome = status
                await settlements.settle { await then(outcome) }
            }
        )
    }
}
