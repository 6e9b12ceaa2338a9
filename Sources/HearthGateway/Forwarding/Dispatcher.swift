import Foundation
package import HearthCore
import HearthMesh
package import Logging
import NIOCore
import Synchronization

/// An upstream response that has produced its first chunk, so the client can be answered.
package struct OpenedUpstream: Sendable {
    package var node: NodeID
    /// The account of the node's device certificate, as admission established it.
    var account: NodeID?
    /// The model's canonical id, and the GGUF SHA-256 the node announced for it.
    var model: ModelID
    var modelSHA256: SHA256Digest?
    /// The pool whose head answered, and the plan the gateway made for it, when the node served as a pool's head.
    var pool: PoolID?
    var poolPlan: (epoch: Int, plan: PoolPlan)?
    /// The `max_tokens` sent to the node.
    var maxTokens: Int
    /// The most its answer can honestly count (the request's size and `max_tokens`): charged and credited no further.
    var bounds: UsageBounds
    /// The model the client asked for, when a smaller one of its family serves instead (`Degradation`).
    var degradedFrom: ModelID?
    /// Whether the node streams the answer: only then is its first byte a time to first token.
    var streamed: Bool
    var response: NodeResponse
    /// The first chunk of the body (`nil` for an empty body).
    var firstChunk: ByteBuffer?
    var startedAt: ContinuousClock.Instant
    var firstByteAt: ContinuousClock.Instant
}

/// Chooses nodes for a request and opens it, retrying on another node when one fails before its first byte.
package struct Dispatcher: Sendable {
    let registry: NodeRegistry
    let transport: any NodeTransport
    let maxAttempts: Int
    let retryAfterSeconds: Int
    /// Resolves a name without quantization to the catalog's choice (Q8_0 first).
    let catalog: Catalog
    /// Pools: asked when no node is ready for a model, told when a request goes to a pool's head.
    var pools: PoolReconciler?
    /// Retries in flight, held within `retryBudget` of the requests in flight.
    let retries = RetriesInFlight()
    package var retryBudget = RetryBudget()

    package init(
        registry: NodeRegistry,
        transport: any NodeTransport,
        maxAttempts: Int,
        retryAfterSeconds: Int,
        catalog: Catalog = .builtin,
        pools: PoolReconciler? = nil
    ) {
        self.registry = registry
        self.transport = transport
        self.maxAttempts = maxAttempts
        self.retryAfterSeconds = retryAfterSeconds
        self.catalog = catalog
        self.pools = pools
    }

    /// 503 for a model a pool is warming for (or was just created for), with how far it is, or that could have one
    /// but for the cap on automatic pools; `nil` when no pool helps.
    private func warming(_ model: ModelID) async -> DispatchFailure? {
        switch await pools?.demand(model: model) {
        case nil:
            return nil
        case .warming(let progress):
            return DispatchFailure(
                APIFailure(.unavailable, "The pool for '\(model)' is warming (\(progress)); try again shortly.", code: "pool_warming"),
                retryAfter: retryAfterSeconds
            )
        case .full(let limit):
            return DispatchFailure(
                APIFailure(
                    .unavailable,
                    "No node serves '\(model)' alone, and this gateway already runs as many automatic pools as it allows "
                        + "(\(limit)); try again when one has gone idle, or ask an operator to create one.",
                    code: "pool_limit"
                ),
                retryAfter: retryAfterSeconds
            )
        }
    }

    /// Opens `body` for `model` on the best ready node. The caller must call `finish(_:)` when done with the stream.
    /// - Throws: `DispatchFailure` with an `APIFailure` for the client: 404 for an unknown model, 503 when no node
    ///   is ready, 502 when every attempted node failed.
    package func open(
        endpoint: CompletionEndpoint,
        model: ModelID,
        body: JSONValue,
        requestID: String,
        consumer: String = "anonymous",
        logger: Logger,
        excluding: Set<NodeID> = [],
        sameFile: SHA256Digest? = nil,
        retry: Bool = false,
        allowDegrade: Bool = false,
        clientWatch: ClientWatch? = nil
    ) async throws(DispatchFailure) -> OpenedUpstream {
        // Where the request may go is decided without waiting on anything (`route`); what follows only tries the
        // nodes. Kept apart, the planning's temporaries are not in this function's async frame either (10.0 → 5.7 KB
        // in the release build; an open stream's memory did not change measurably, see `bench/README.md`).
        let routing: Routing
        switch route(
            endpoint: endpoint,
            model: model,
            body: body,
            logger: logger,
            excluding: excluding,
            sameFile: sameFile,
            allowDegrade: allowDegrade
        ) {
        case .routed(let routed): routing = routed
        case .refused(let failure): throw failure
        case .refusedUnlessWarming(let failure):
            if let warming = await warming(model) { throw warming }
            throw failure
        }
        let (nodes, candidates, canonical, degradedFrom, bytes) = (
            routing.nodes, routing.candidates, routing.canonical, routing.degradedFrom, routing.bytes
        )
        var failures: [String] = []
        // A request that is itself a retry (a continuation, an answer asked again) holds one retry while it opens.
        if retry {
            guard retries.begin(within: retryBudget, requests: registry.requestsInFlight()) else {
                throw DispatchFailure(APIFailure(.unavailable, "Too many retries are under way; try again shortly.", code: "retry_budget"))
            }
        }
        defer { if retry { retries.end() } }
        // Whether the last node failed by going away (its link closed or cut the stream): its requests must move, and
        // it is out of routing, so moving them cannot add load to a sick node. The budget is for nodes that are still
        // there and failing; a node that dies with all its slots busy would otherwise spend it in one go.
        var nodeWentAway = false
        for (attempt, node) in candidates.prefix(max(1, maxAttempts)).enumerated() {
            // Another node after a failure is a retry too: only within the budget, so a bad hour cannot multiply load.
            let budgeted = attempt > 0 && !retry && !nodeWentAway
            if budgeted {
                guard retries.begin(within: retryBudget, requests: registry.requestsInFlight()) else {
                    failures.append("retry budget spent")
                    break
                }
            }
            defer { if budgeted { retries.end() } }
            let startedAt = ContinuousClock.now
            registry.begin(on: node)
            // A node serving the model alone is asked for that; one that serves it only as a pool's head, for the pool.
            let offered = nodes.first { $0.id == node }?.models.filter { $0.id == canonical } ?? []
            let pool =
                offered.contains { $0.pool == nil && ($0.state == .ready || $0.state == .standby) }
                ? nil : offered.first { $0.pool != nil && $0.state == .ready }?.pool
            if let pool { pools?.used(pool) }
            do {
                // The wait for the node's head and first byte ends early if the client goes away (`ClientWatch`).
                let request = NodeRequest(
                    endpoint: endpoint,
                    body: bytes,
                    requestID: requestID,
                    consumer: consumer,
                    modelSHA256: catalog[canonical]?.sha256,
                    pool: pool
                )
                let response = try await ClientWatch.whileWaiting(clientWatch) { try await transport.send(request, to: node) }
                if response.status >= 500 {
                    nodeWentAway = false
                    release(node, pool: pool)
                    let code = await Self.errorCode(of: response.body)
                    failures.append("\(node.short): HTTP \(response.status)" + (code.map { " \($0)" } ?? ""))
                    logger.debug("node answered with a server error", metadata: ["node.id": "\(node.short)", "http.status": "\(response.status)"])
                    continue
                }
                // The node is answering: a client that goes now has it stopped, and its answer (with the receipt for
                // what it did) is read as for any client that went away.
                let first = try await ClientWatch.whileWaiting(clientWatch, onLeave: stopping(requestID, on: node)) {
                    try await response.body.next()
                }
                let firstByteAt = ContinuousClock.now
                let served = nodes.first { $0.id == node }?.models.first { $0.id == canonical }
                return OpenedUpstream(
                    node: node,
                    account: registry.account(of: node),
                    model: canonical,
                    modelSHA256: served?.sha256,
                    pool: pool,
                    poolPlan: pool.flatMap { pools?.currentPlan(of: $0) },
                    maxTokens: Int(body["max_tokens"]?.integerValue ?? 0),
                    bounds: UsageBounds(
                        requestBytes: bytes.readableBytes,
                        maxTokens: Int(clamping: body["max_tokens"]?.integerValue ?? 0),
                        alternatives: UsageBounds.alternatives(in: body)
                    ),
                    degradedFrom: degradedFrom,
                    streamed: body["stream"]?.boolValue == true,
                    response: response,
                    firstChunk: first,
                    startedAt: startedAt,
                    firstByteAt: firstByteAt
                )
            } catch {
                release(node, pool: pool)
                if clientWatch?.clientLeft == true {
                    // Nobody is waiting for an answer any more: no other node is asked.
                    let failure = APIFailure(.upstream, "The client went away before a node answered.", code: "client_closed")
                    throw DispatchFailure(failure, clientLeft: true)
                }
                nodeWentAway = error as? LinkError == .closed || error as? LinkError == .truncated
                failures.append("\(node.short): \(String(describing: error).prefix(120))")
                logger.debug("node failed before its first byte", metadata: ["node.id": "\(node.short)", "error": "\(error)"])
            }
        }
        throw DispatchFailure(
            APIFailure(
                .upstream,
                "No node could serve the request (\(failures.joined(separator: "; ")))",
                code: "upstream_failed"
            ),
            retryAfter: retryAfterSeconds
        )
    }

    /// The error code in a node's error answer (`engine_failed`, `model_not_ready`, ...), for the client's message when
    /// no node could serve: the code only, which a node's own answers hold to a word, where the message may name what
    /// is the node owner's (an owner's server's address). Read for a second at most: a node's error answer comes whole.
    static func errorCode(of body: NodeResponseBody) async -> String? {
        guard let answer = try? await withDeadline(.seconds(1), { try await body.collect(upTo: 16 << 10) }),
            let code = (try? JSONValue.parse(answer.readableBytesView))?["error"]?["code"]?.stringValue,
            (1...64).contains(code.utf8.count),
            code.utf8.allSatisfy({ (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || $0 == UInt8(ascii: "_") })
        else { return nil }
        return code
    }

    /// Asks `node` to stop answering `requestID` (its answer then ends with the receipt for what it did). A method, not
    /// a closure written in `open`: Swift 6.3's `ClosureLifetimeFixup` pass crashed the compiler on that one.
    private func stopping(_ requestID: String, on node: NodeID) -> ClientWatch.OnLeave {
        let transport = transport
        return .run { Task { await transport.cancel(requestID: requestID, on: node) } }
    }

    /// Where a request may go, decided over the registry's snapshot: the nodes to try in order, the catalog's name for
    /// the model (or the smaller one it is degraded to) and the body to send them; or why it cannot go anywhere.
    private struct Routing {
        var nodes: [RoutableNode]
        var candidates: [NodeID]
        var canonical: ModelID
        var degradedFrom: ModelID?
        var bytes: ByteBuffer
    }

    private enum RouteDecision {
        case routed(Routing)
        case refused(DispatchFailure)
        /// Refused, unless a pool is warming for the model (`warming`), which says so instead.
        case refusedUnlessWarming(DispatchFailure)
    }

    /// Why a request for `model` at `endpoint` would be refused now, or `nil` when a node would be asked: for
    /// requests that only ask whether a model is there (Ollama's empty ones, which load it), without sending any.
    func refusal(_ endpoint: CompletionEndpoint, model: ModelID, logger: Logger) -> DispatchFailure? {
        switch route(endpoint: endpoint, model: model, body: [:], logger: logger, excluding: [], sameFile: nil, allowDegrade: false) {
        case .routed: nil
        case .refused(let failure), .refusedUnlessWarming(let failure): failure
        }
    }

    /// The planning part of `open`, which waits on nothing.
    private func route(
        endpoint: CompletionEndpoint,
        model: ModelID,
        body: JSONValue,
        logger: Logger,
        excluding: Set<NodeID>,
        sameFile: SHA256Digest?,
        allowDegrade: Bool
    ) -> RouteDecision {
        var nodes = registry.routableNodes()
        // A head is routed to only while the gateway's own plan says its pool serves there: a report a poll behind
        // would otherwise send requests to a head that was just stopped.
        if let pools {
            for index in nodes.indices {
                let node = nodes[index].id
                nodes[index].models.removeAll { model in model.pool.map { !pools.serves($0, head: node) } ?? false }
            }
        }
        // Embeddings go only to engines started for them.
        if endpoint == .embeddings {
            for index in nodes.indices { nodes[index].models.removeAll { $0.embeddings != true || $0.pool != nil } }
        }
        // A model from an owner's own server whose file the node could not check is routed to only when allowed.
        // A failed one stays: it is served by no one anyway, and keeps the model known (503, not 404). Filtered only
        // when there is one, so the common request copies no node list.
        let withUnverified = nodes
        let leftOut = { (model: ServedModel) in !self.registry.routes(model) && model.state != .failed }
        if nodes.contains(where: { $0.models.contains(where: leftOut) }) {
            for index in nodes.indices { nodes[index].models.removeAll(where: leftOut) }
        }
        let candidates: [NodeID]
        let canonical: ModelID
        var degradedFrom: ModelID?
        var plan = RoutePlanner.plan(model: model, nodes: nodes, catalog: catalog)
        if allowDegrade, sameFile == nil, !plan.hasCandidates {
            // No capacity for the model asked: the largest smaller one of its family that has some, and say so.
            for alternative in Degradation.alternatives(for: model, in: catalog) {
                let smaller = RoutePlanner.plan(model: alternative.id, nodes: nodes)
                guard smaller.hasCandidates else { continue }
                degradedFrom = catalog.resolve(model, includeUnpinned: true)?.id ?? model
                plan = smaller
                logger.info("degrading to a smaller model", metadata: ["model.asked": "\(model)", "model.served": "\(alternative.id)"])
                break
            }
        }
        if !plan.hasCandidates, !registry.routesUnverifiedBackends,
            RoutePlanner.plan(model: model, nodes: withUnverified, catalog: catalog).hasCandidates
        {
            return .refused(
                DispatchFailure(
                    APIFailure(
                        .unavailable,
                        "'\(model)' is served now only by owners' own servers whose file could not be checked, and this gateway "
                            + "does not route to unverified backends (its operator can allow them with --allow-unverified-backends).",
                        code: "model_unverified"
                    ),
                    retryAfter: retryAfterSeconds
                )
            )
        }
        switch plan {
        case .unknownModel:
            if endpoint == .embeddings {
                return .refused(
                    DispatchFailure(
                        APIFailure(
                            .notFound,
                            "No node serves embeddings with '\(model)'. Nodes serve them from catalog embedding models, or from any model when started with --embeddings.",
                            param: "model",
                            code: "model_not_found"
                        )
                    )
                )
            }
            return .refusedUnlessWarming(
                DispatchFailure(
                    APIFailure(.notFound, "The model '\(model)' does not exist on this network.", param: "model", code: "model_not_found")
                )
            )
        case .noReadyNode, .failedEverywhere:
            // A model every node reports failed is not ready "yet": no node is on its way to serving it. The code is the
            // same either way, the one clients retry on; a node whose engine or owner's server comes back serves it again.
            let message =
                plan == .failedEverywhere
                ? "Every node offering '\(model)' reports it failed, so none can serve it now; it is served again once a node has it ready."
                : "No node serving '\(model)' is ready yet; try again shortly."
            return .refusedUnlessWarming(
                DispatchFailure(APIFailure(.unavailable, message, code: "model_not_ready"), retryAfter: retryAfterSeconds)
            )
        case .candidates(let planned, let name):
            // A continuation goes only to another node with the very file the earlier part came from.
            candidates = planned.filter { node in
                !excluding.contains(node)
                    && (sameFile == nil || nodes.first { $0.id == node }?.models.contains { $0.id == name && $0.sha256 == sameFile } == true)
            }
            canonical = name
        }
        guard !candidates.isEmpty else {
            return .refused(
                DispatchFailure(
                    APIFailure(.unavailable, "No other node serving '\(model)' is ready.", code: "model_not_ready"),
                    retryAfter: retryAfterSeconds
                )
            )
        }
        var forwarded = body
        forwarded["model"] = .string(canonical.rawValue)
        let bytes = ByteBuffer(bytes: forwarded.serialized())
        return .routed(Routing(nodes: nodes, candidates: candidates, canonical: canonical, degradedFrom: degradedFrom, bytes: bytes))
    }

    /// A node that failed before its first byte: its request (and its pool's) is over, and counted as a failure.
    private func release(_ node: NodeID, pool: PoolID?) {
        if let pool { pools?.finished(pool) }
        registry.end(on: node, latency: nil)
        registry.outcome(on: node, success: false)
    }

    /// Marks the request on `upstream.node` as over: `broken` when its answer broke off, `pace` the seconds between
    /// its tokens (streams of two tokens or more). A whole answer's first byte comes when it is all generated, so only
    /// a stream's feeds the node's time to first byte.
    func finish(_ upstream: OpenedUpstream, broken: Bool = false, pace: Double? = nil) {
        let latency = upstream.firstByteAt - upstream.startedAt
        if let pool = upstream.pool { pools?.finished(pool) }
        registry.end(on: upstream.node, latency: upstream.streamed ? latency.seconds : nil, pace: pace)
        registry.outcome(on: upstream.node, success: !broken)
    }
}

/// Retries under way across the gateway, counted against `RetryBudget`.
final class RetriesInFlight: Sendable {
    private let count = Mutex(0)

    /// Starts a retry if the budget allows one with `requests` requests in flight.
    func begin(within budget: RetryBudget, requests: Int) -> Bool {
        count.withLock { count in
            guard budget.allows(retries: count, requests: requests) else { return false }
            count += 1
            return true
        }
    }

    func end() { count.withLock { $0 = max(0, $0 - 1) } }
}

/// A failure to dispatch, with the API error to return and an optional `Retry-After`.
package struct DispatchFailure: Error, Sendable {
    package var failure: APIFailure
    var retryAfter: Int?
    /// The client's connection closed while a node was being asked: nothing is answered, the request is metered
    /// `client_closed`.
    var clientLeft: Bool

    init(_ failure: APIFailure, retryAfter: Int? = nil, clientLeft: Bool = false) {
        self.failure = failure
        self.retryAfter = retryAfter
        self.clientLeft = clientLeft
    }
}

extension RoutePlan {
    var hasCandidates: Bool {
        if case .candidates = self { return true }
        return false
    }
}
