import Foundation
import HearthCore
import HearthMesh
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat

/// One client's stream, from the node that opened it to its end: when that node's stream breaks before the engine's
/// last event, it is continued on another node serving the same file, and the client reads on as if nothing happened
/// (docs/ROUTING.md, "Continuation"). Each node's part is its own request to the node (`<id>.<part>`), metered and
/// settled with that node's receipt; the client's usage event adds the parts up.
///
/// Used by one task at a time, from the first event to `finish` (or `cancel`).
struct ContinuingStream {
    /// The part being read, and its reader and tally (what its receipt is checked against).
    private(set) var served: ServedRequest
    private var reader: SSEEventReader
    private var tally = StreamTokenCount()
    /// The request as the first node got it, when it can be continued at all.
    private let original: (endpoint: CompletionEndpoint, body: JSONValue)?
    private let maxContinuations: Int
    private var part = 0
    private var tried: Set<NodeID>
    /// What the client has seen generated, and the stream's `id` and `created` (from its first event).
    private var generation = Generation()
    private var identity: (id: String, created: Int64)?
    /// The first event's `model` and `object`, for events the gateway writes itself (`closing`).
    private var model: JSONValue = .null
    private var object: JSONValue = .null
    /// The prompt's size as the first node's engine reported it while the stream ran (per-token timings).
    private var firstPromptTokens: Int?
    /// Set when a stream broke with its whole `max_tokens` already relayed: the gateway ends it itself with these
    /// events (finish, usage, `[DONE]`) instead of asking another node for a token more than the client allowed.
    private var closing: [(event: ByteBuffer, kind: StreamEvent)]?
    private var partStartTokens = 0
    /// What the parts finished so far charged the client.
    private var charged = TokenUsage(promptTokens: 0, completionTokens: 0)
    /// The current part's node ended it early to hand it over (it drains): its receipt is settled, not refused.
    private var handedOver = false
    /// The current part has been metered (a broken part that could not be continued stays the current one).
    private var partFinished = false
    /// A finish reason went by: the text is complete, only usage and `[DONE]` may follow.
    private var finished = false
    /// `[DONE]` went by: the stream is complete even if its server named no finish reason.
    private var done = false
    /// Whether the engine ended the answer itself (`finish_reason: stop`), for the spot check's question of whether
    /// the model would stop there.
    private var endedByEngine = false
    /// The client's usage, when the stream has been continued (the last part's, minus what it prefilled).
    private(set) var clientUsage: TokenUsage?
    /// The client asked for chat chunks (for the events the gateway writes itself).
    private let chat: Bool
    /// The node's stream went on past the client's `max_tokens` and was cut there (see `next`).
    private var overran = false
    /// The bytes of the current part's events so far, held to its `UsageBounds.answerBytes`.
    private var partBytes = 0

    init(_ served: ServedRequest, endpoint: CompletionEndpoint, body: JSONValue, maxContinuations: Int) {
        self.served = served
        self.reader = SSEEventReader(served.upstream)
        self.original = Continuation.refusal(for: body, chat: endpoint == .chat) == nil ? (endpoint, body) : nil
        self.maxContinuations = maxContinuations
        self.tried = [served.node]
        self.chat = endpoint == .chat
    }

    /// The node serving the current part.
    var node: NodeID { served.node }

    /// Where a task relaying this stream runs best: on the event loop its first node's link reads it on, so that each
    /// event resumes the task on the thread that read it (`nil` for a transport without one).
    var executor: (any TaskExecutor)? { served.upstream.response.body.eventLoop.map(EventLoopExecutor.init) }

    /// The next event for the client with what it is, or `nil` at the end of the stream.
    /// - Throws: when the stream broke and could not be continued.
    mutating func next() async throws -> (event: ByteBuffer, kind: StreamEvent)? {
        while true {
            if closing != nil { return closing?.isEmpty == false ? closing?.removeFirst() : nil }
            let event: ByteBuffer
            do {
                guard let next = try await reader.next() else {
                    if finished || done { return nil }
                    // A node that drains ends its streams early with its receipt and says so: go on elsewhere.
                    if await served.upstream.response.body.trailer(LinkProtocol.handoverTrailer) != nil {
                        handedOver = true
                        if await continueElsewhere(after: HandedOver()) { continue }
                        throw HandedOver()
                    }
                    // The node ended the stream, with its receipt, before the engine's finish: its engine broke off
                    // (it died, or the owner's server went away). As for a node that broke the stream.
                    if await continueElsewhere(after: EndedEarly()) { continue }
                    throw EndedEarly()
                }
                event = next
            } catch let error as HandedOver {
                throw error
            } catch let error as EndedEarly {
                throw error
            } catch {
                if finished { return nil }
                if await continueElsewhere(after: error) { continue }
                throw error
            }
            if let relayed = take(event) { return relayed }
        }
    }

    /// Reads one event of the current part: what the client gets, or `nil` when the stream went past its bounds and
    /// ends with the gateway's own closing events (`closing`).
    ///
    /// Not async, and never inlined into `next`: an async function's frame is allocated in its task's memory and
    /// sized for everything the function holds, and a held stream's task keeps the deepest such frames for as long
    /// as it streams (`bench/README.md`, twenty-third pass). The reading of an event holds a good deal and waits for
    /// nothing, so it stays out of the frame that waits.
    @inline(never)
    private mutating func take(_ received: ByteBuffer) -> (event: ByteBuffer, kind: StreamEvent)? {
        var event = received
        // What the client had before this event: what it is charged if this one goes past its bounds.
        let seen = max(generation.tokens, partStartTokens + tally.events - 1)
        if let (mark, length) = event.withUnsafeReadableBytes({ TokenMark.parse($0) }) {
            event.moveReaderIndex(forwardBy: length)
            let marked = event
            generation.observe(mark) { Self.text(of: marked) }
        }
        let kind = event.withUnsafeReadableBytes { tally.observe(bytes: $0) }
        if kind == .done { done = true }
        let bounds = served.upstream.bounds
        let allowed = bounds.completionTokens
        partBytes += event.readableBytes
        if !finished, generation.tokens > allowed || tally.events > bounds.events || partBytes > bounds.answerBytes {
            // Past `max_tokens` (or the bytes as many events may take): the owner's server behind the node ignored
            // it, or the node lies. The client gets the answer as an engine would have ended it and pays for no
            // more; the node is stopped at `finish`.
            served.logger.warning(
                "node's stream went past max_tokens; cut there",
                metadata: ["node.id": "\(served.node.short)", "max_tokens": "\(allowed)"]
            )
            overran = true
            finished = true
            let usage = TokenUsage(
                promptTokens: part == 0 ? tally.promptFromTimings ?? 0 : firstPromptTokens ?? 0,
                completionTokens: min(allowed, seen)
            )
            closing = closingEvents(chat: chat, identity: identity ?? ("", 0), usage: usage)
            return nil
        }
        if identity == nil, let payload = event.ssePayload(), let chunk = try? JSONValue.parse(payload.readableBytesView) {
            identity = (chunk["id"]?.stringValue ?? "", chunk["created"]?.integerValue ?? 0)
            model = chunk["model"] ?? .null
            object = chunk["object"] ?? .null
        }
        if let reason = event.withUnsafeReadableBytes({ StreamEvent.finishReason(bytes: $0) }) {
            finished = true
            endedByEngine = reason == "stop"
        }
        if case .usage(let usage, let usageOnly) = kind, part > 0, let prefill = served.upstream.response.prefill {
            let client = TokenUsage(promptTokens: max(0, usage.promptTokens - prefill), completionTokens: prefill + usage.completionTokens)
            clientUsage = client
            return (Self.replacingUsage(in: event, with: client) ?? event, .usage(client, usageOnly: usageOnly))
        }
        return (event, kind)
    }

    /// The node's stream broke: finishes its part as broken and opens the next one, unless the stream cannot or
    /// may not be continued. Returns whether a new part is open.
    private mutating func continueElsewhere(after error: any Error) async -> Bool {
        guard let original, part < maxContinuations, !generation.abandoned, let identity else { return false }
        let broken = served
        served.logger.info(
            "node's stream broke; continuing on another node",
            metadata: ["node.id": "\(broken.node.short)", "tokens": "\(generation.tokens)", "error": "\(error)"]
        )
        if part == 0 { firstPromptTokens = tally.promptFromTimings }
        await finishPart(status: .upstreamError)
        if let allowed = original.body["max_tokens"]?.integerValue, generation.tokens >= allowed {
            // The cut came between the last allowed token and the engine's finish chunk: a node asked to go on would
            // make at least one token more (an engine makes one at least), so the answer ends here, as the engine
            // would have ended it.
            closing = closingEvents(
                chat: chat,
                identity: identity,
                usage: TokenUsage(promptTokens: firstPromptTokens ?? 0, completionTokens: generation.tokens)
            )
            finished = true
            return true
        }
        var body = original.body
        body[Continuation.field] = ContinuationRequest(generated: generation.promptPieces, id: identity.id, created: identity.created).json
        while part < maxContinuations {
            part += 1
            guard let next = try? await broken.openPart(part, endpoint: original.endpoint, body: body, excluding: tried, retry: false) else {
                return false
            }
            tried.insert(next.node)
            guard next.upstream.response.prefill != nil else {
                // A node that does not know continuations would start the answer over: not for this client.
                served.logger.warning("node did not continue the stream", metadata: ["node.id": "\(next.node.short)"])
                await next.finish(usage: nil, fallbackCompletionTokens: 0, status: .upstreamError)
                continue
            }
            served = next
            partFinished = false
            reader = SSEEventReader(next.upstream)
            tally = StreamTokenCount()
            partBytes = 0
            partStartTokens = generation.tokens
            served.pipeline.metrics.continued()
            return true
        }
        return false
    }

    /// The client went away: the node is asked to stop, and its part ends with its receipt (see `cancelAndDrain`).
    mutating func cancel() async {
        await served.cancelAndDrain(&reader, tally: &tally)
        await finishPart(status: .clientClosed)
    }

    /// `cancel`, in a task beside the connection: for a stream whose response head could not be written (its client
    /// reset the connection first, see `ResponseBody.owing`).
    func cancelBeside(_ settlements: Settlements) {
        let stream = self
        settlements.begin {
            var stream = stream
            await stream.cancel()
        }
    }

    /// Meters the last part once the client has its response (or went away), and offers a whole answer that one node
    /// gave for a spot check: by its token ids, or by its text when it reported none.
    mutating func finish(status: RequestOutcome) async {
        if overran {
            // Cut mid-stream: the node is asked to stop, and its part ends with its receipt for what it did.
            await served.cancelAndDrain(&reader, tally: &tally)
            return await finishPart(status: .upstreamError)
        }
        await finishPart(status: status)
        guard status == .ok, part == 0, finished, closing == nil, let original, let checker = served.pipeline.spotChecker,
            let sha256 = served.upstream.modelSHA256, let claim = generation.spotCheckClaim
        else { return }
        checker.consider(
            SpotChecker.Answer(
                requestID: served.requestID,
                node: served.node,
                model: served.upstream.model,
                sha256: sha256,
                endpoint: original.endpoint,
                body: original.body,
                consumer: served.consumer,
                claim: claim,
                reported: generation.reportedTokens,
                endedByEngine: endedByEngine
            )
        )
    }

    /// A 200 response carrying a whole body made from the stream (Ollama's answer that does not stream); metered once
    /// the client has it, or as `client_closed` if it went away first.
    func respond(with body: ByteBuffer, headers: HTTPFields) -> Response {
        let finished = self
        return .whole(body, headers: headers, settlements: served.pipeline.settlements) { status in
            var stream = finished
            await stream.finish(status: status)
        }
    }

    /// Ends the current part: its receipt is checked against what it relayed. The client is charged what it saw of
    /// it: the first part as any stream; a later one the tokens it added, or, when the stream ended with its usage,
    /// whatever the client's usage says the earlier parts did not charge (a broken part's prompt count is what the
    /// engine had read, which leaves out a cached prefix).
    private mutating func finishPart(status: RequestOutcome) async {
        guard !partFinished else { return }
        partFinished = true
        let status = handedOver ? .handedOver : status
        handedOver = false
        let relayed = tally.counted
        var charge = relayed
        if part == 0, overran, let client = clientUsage { charge = client }
        if part > 0 {
            if let client = clientUsage {
                charge = TokenUsage(
                    promptTokens: max(0, client.promptTokens - charged.promptTokens),
                    completionTokens: max(0, client.completionTokens - charged.completionTokens)
                )
            } else {
                charge = TokenUsage(promptTokens: 0, completionTokens: max(0, generation.tokens - partStartTokens))
            }
        }
        charged.promptTokens += charge?.promptTokens ?? 0
        charged.completionTokens += charge?.completionTokens ?? tally.fallbackCompletionTokens
        await served.finish(usage: relayed, charge: charge, fallbackCompletionTokens: tally.fallbackCompletionTokens, status: status)
    }

    /// A node's stream that ended without its answer because the node drains.
    struct HandedOver: Error, CustomStringConvertible {
        var description: String { "the node handed the stream over (it is stopping)" }
    }

    /// A node's stream that ended, receipt and all, before its engine's finish event.
    struct EndedEarly: Error, CustomStringConvertible {
        var description: String { "the node's stream ended before the engine finished the answer" }
    }

    /// The generated text of an event (the first choice's), decoded: only gaps need it. Read from the event's outline
    /// (every event of an owner's server that reports no token ids is a gap).
    private static func text(of event: ByteBuffer) -> String? {
        event.withUnsafeReadableBytes { SSEFraming.withPayload(of: $0) { CompletionChunk.firstText(in: $0) } } ?? nil
    }

    /// The end of an answer whose `max_tokens` was all relayed (when its node broke, or went past it): the finish chunk
    /// (`length`), the usage chunk (passed to the client only if it asked for usage, like any other) and `[DONE]`. The
    /// usage counts the tokens the client saw, and the prompt as the engine reported it (0 when it did not).
    private mutating func closingEvents(
        chat: Bool,
        identity: (id: String, created: Int64),
        usage: TokenUsage
    ) -> [(event: ByteBuffer, kind: StreamEvent)] {
        clientUsage = usage
        let choice: JSONValue =
            chat
            ? ["index": 0, "delta": [:], "finish_reason": "length"]
            : ["index": 0, "text": "", "logprobs": .null, "finish_reason": "length"]
        var chunk: JSONValue = ["id": .string(identity.id), "object": object, "created": .integer(identity.created), "model": model]
        chunk["choices"] = [choice]
        var usageChunk = chunk
        usageChunk["choices"] = []
        usageChunk["usage"] = Self.usageJSON(usage)
        return [
            (Self.sseEvent(chunk), .other),
            (Self.sseEvent(usageChunk), .usage(usage, usageOnly: true)),
            (ByteBuffer(string: "data: [DONE]\n\n"), .done),
        ]
    }

    private static func usageJSON(_ usage: TokenUsage) -> JSONValue {
        [
            "prompt_tokens": .integer(Int64(usage.promptTokens)), "completion_tokens": .integer(Int64(usage.completionTokens)),
            "total_tokens": .integer(Int64(usage.totalTokens)),
        ]
    }

    private static func sseEvent(_ chunk: JSONValue) -> ByteBuffer {
        var event = ByteBuffer(string: "data: ")
        event.writeBytes(chunk.serialized(sortedKeys: true))
        event.writeString("\n\n")
        return event
    }

    /// A usage event with the client's counts in place of the last node's.
    private static func replacingUsage(in event: ByteBuffer, with usage: TokenUsage) -> ByteBuffer? {
        guard let payload = event.ssePayload(), var chunk = try? JSONValue.parse(payload.readableBytesView) else { return nil }
        chunk["usage"] = usageJSON(usage)
        return sseEvent(chunk)
    }
}
