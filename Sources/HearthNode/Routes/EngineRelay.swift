import HearthCore
import HearthMesh
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// One engine stream relayed to the gateway on the link stream's event loop: `EngineConnection` reads the engine's
/// connection on that loop and hands each chunk to this reader there, and the reader rewrites it and writes it to the
/// link stream's channel there and then. No Swift task wakes per event
/// (each wake-up was a thread switch: the engine reader's, the response writer's, then the event loop's again). The
/// backpressure is the link stream's writability: once its HTTP/2 window or buffer is full, the engine's connection is
/// read no further until the gateway's stream window takes the chunk.
///
/// The route's task waits twice: for the engine's head (to answer an error as an error) and for the end (to sign the
/// receipt, sent as the trailer through Hummingbird's writer after the last chunk, which this relay wrote first).
final class EngineRelay: EngineResponseReader, @unchecked Sendable {
    /// How the engine's stream ended, for the receipt.
    struct Ending: Sendable {
        /// The events as the node counts them for its receipt.
        var tap: UsageTap
        /// The engine's stream broke, or the node cancelled it (`cancel`); `nil` when the engine finished it.
        var failure: (any Error)?
        /// A write to the link stream failed: the gateway reset it, so nothing more (not even a receipt) can be sent.
        var linkGone: Bool
    }

    // Everything below is touched only on `eventLoop`: `EngineConnection` calls the reader there, and `send`, `relay`
    // and `cancel` hop to it.
    let eventLoop: any EventLoop
    private var rewriter: EngineStreamRewriter
    private var tap = UsageTap(streaming: true)
    private let head: EventLoopPromise<HTTPResponseHead>
    private let ending: EventLoopPromise<Ending>
    /// Succeeds with the link stream once the gateway has the response head; fails when it never will.
    private let started: EventLoopPromise<any Channel>
    /// The link stream once `started` has it: a chunk then goes straight to it, without a future chained per chunk.
    private var relaying: (any Channel)?
    /// An error answer's body, read whole (it is short) to be restated for the gateway (`EngineRefusal`).
    private var refusal = ByteBuffer()
    private let refusalEnded: EventLoopPromise<ByteBuffer>
    private var status: HTTPResponseStatus?
    private var exchange: EngineExchange?
    private var linkGone = false
    /// The link's flush coalescer, which lets a token wait a little for the link's other streams (looked up when the
    /// relay starts, before any token; `nil` for a link without one).
    private var coalescer: LinkFlushCoalescer?

    /// The most events the engine's stream may have (`UsageBounds.events` of the request's `max_tokens`), for an
    /// owner's server that may ignore `max_tokens`; `nil` for none.
    private let eventLimit: Int?
    /// The stream went past `eventLimit`: the engine's request was dropped.
    private(set) var overran = false

    /// A relay to `link`, the stream the gateway's request came on; when it closes before the relay is over (the
    /// gateway reset it, or the response head could not be written), the engine's request is dropped. Past
    /// `eventLimit` events, the engine's request is dropped too, after the event that went past it (the gateway, which
    /// counts the same, then ends the client's answer where `max_tokens` did).
    init(to link: any Channel, rewriter: EngineStreamRewriter, eventLimit: Int? = nil) {
        eventLoop = link.eventLoop
        self.rewriter = rewriter
        self.eventLimit = eventLimit
        head = eventLoop.makePromise()
        ending = eventLoop.makePromise()
        started = eventLoop.makePromise()
        refusalEnded = eventLoop.makePromise()
        link.closeFuture.whenComplete { _ in self.cancel() }
    }

    /// Sends `request` to the engine from the link's event loop, on a connection made there (or kept there from an
    /// earlier request to the same server); the head comes from `responseHead()`.
    func send(_ request: EngineRequest) {
        let exchange = EngineConnection.send(request, on: eventLoop, to: self)
        eventLoop.execute { self.exchange = exchange }
    }

    /// The engine's response head; throws when the engine did not answer (or `cancel` came first).
    func responseHead() async throws -> HTTPResponseHead {
        try await head.futureResult.get(cancelling: cancel)
    }

    /// An error answer's whole body (up to 64 KiB).
    func refusalBody() async -> ByteBuffer {
        (try? await refusalEnded.futureResult.get()) ?? ByteBuffer()
    }

    /// Relays the engine's stream to `link` (whose response head has been written: its writes are on the event loop's
    /// queue before this) until it ends.
    func relay(to link: any Channel) async -> Ending {
        eventLoop.execute {
            self.coalescer = try? link.parent?.pipeline.syncOperations.handler(type: LinkFlushCoalescer.self)
            self.started.succeed(link)
            // Only if that took: a relay cancelled before it began stays stopped.
            self.started.futureResult.assumeIsolated().whenSuccess { self.relaying = $0 }
        }
        return await withTaskCancellationHandler {
            // `ending` never fails: every way out of the engine's request succeeds it.
            (try? await ending.futureResult.get()) ?? Ending(tap: UsageTap(streaming: true), failure: CancellationError(), linkGone: true)
        } onCancel: {
            self.cancel()
        }
    }

    /// Stops the engine's request (its connection is closed, which stops the generation); the stream then ends with
    /// what was relayed.
    func cancel() {
        eventLoop.execute {
            self.started.fail(CancellationError())
            self.exchange?.cancel()
        }
    }

    /// Runs `body` once the relay is over, however it ended (or never started).
    func whenEnded(_ body: @escaping @Sendable () -> Void) {
        ending.futureResult.whenComplete { _ in body() }
    }

    // MARK: EngineResponseReader, on `eventLoop`

    /// The engine answered a stream's request whole (some OpenAI-compatible servers ignore `stream`): the relay makes
    /// the stream's events of it (`EngineStreamRewriter.answeredWhole`).
    static func answersWhole(_ head: HTTPResponseHead) -> Bool {
        head.status == .ok && head.headers.first(name: "content-type")?.lowercased().hasPrefix("application/json") == true
    }

    func engineHead(_ head: HTTPResponseHead) {
        status = head.status
        if Self.answersWhole(head) { rewriter.answeredWhole() }
        self.head.succeed(head)
    }

    func engineBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void>? {
        guard status == .ok else {
            var buffer = buffer
            if refusal.readableBytes < 64 << 10 { refusal.writeBuffer(&buffer) }
            return nil
        }
        if let relaying { return forward(buffer, to: relaying) }
        return started.futureResult.flatMap { link in self.forward(buffer, to: link) ?? self.eventLoop.makeSucceededVoidFuture() }
    }

    func engineEnd() {
        guard status == .ok else { return end(failure: nil) }
        // The engine's last bytes (an event without its blank line) go too, once the relay has begun.
        started.futureResult.flatMap { link -> EventLoopFuture<Void> in
            guard !self.overran else {
                self.tap.finish()
                return self.eventLoop.makeSucceededVoidFuture()
            }
            let rest: ByteBuffer
            do {
                rest = try self.rewriter.finish()
            } catch {
                return self.eventLoop.makeFailedFuture(error)
            }
            self.tap.observe(rest)
            self.tap.finish()
            guard rest.readableBytes > 0 else { return self.eventLoop.makeSucceededVoidFuture() }
            return link.writeAndFlush(HTTPResponsePart.body(rest)).recover { _ in self.linkGone = true }
        }.whenComplete { result in
            let failure: (any Error)? = if case .failure(let error) = result { error } else { nil }
            self.end(failure: failure)
        }
    }

    func engineFailed(_ error: any Error) {
        tap.finish()
        end(failure: error)
    }

    /// Completes every promise (those already completed keep their value): each must be, before the relay goes.
    private func end(failure: (any Error)?) {
        let error = failure ?? CancellationError()
        head.fail(error)
        relaying = nil
        started.fail(error)
        refusalEnded.succeed(refusal)
        ending.succeed(Ending(tap: tap, failure: failure, linkGone: linkGone))
    }

    /// Relays what `chunk` completes of the engine's events; `nil` when the link stream took them and the engine is
    /// read on at once.
    private func forward(_ chunk: ByteBuffer, to link: any Channel) -> EventLoopFuture<Void>? {
        // Past the request's events, what is still in flight from the engine is dropped with its request.
        guard !overran else { return nil }
        let rewritten: ByteBuffer
        do {
            rewritten = try tap.counting { try rewriter.rewrite(chunk, eachEvent: $0) }
        } catch {
            // An event that never ends: the answer is broken. A failed future drops the engine's request.
            return eventLoop.makeFailedFuture(error)
        }
        guard rewritten.readableBytes > 0 else { return nil }
        let written = eventLoop.makePromise(of: Void.self)
        if let eventLimit, tap.events > eventLimit, !overran {
            // A server streaming on past `max_tokens` would otherwise be read for as long as the gateway takes to stop
            // the request (it drains what is under way): 90 MB of a runaway server's stream on a loaded machine.
            overran = true
            writeToken(rewritten, to: link, promise: written)
            written.futureResult.whenComplete { _ in self.exchange?.cancel() }
            return written.futureResult
        }
        // While the link stream takes more, the engine is read on at once: waiting for each write's future would stop
        // reading and start again per event, two `epoll_ctl` calls per token (the link's flush waits for the end of
        // the loop's turn, so the future is never done on return).
        let writable = link.isWritable
        writeToken(rewritten, to: link, promise: written)
        written.futureResult.whenFailure { _ in
            // The gateway reset the stream (its client went away, or the link fell): the engine's request is dropped
            // (by the failed future the engine's connection waits for, or here when it reads on), which stops the
            // generation.
            self.linkGone = true
            if writable { self.exchange?.cancel() }
        }
        return writable ? nil : written.futureResult
    }

    /// Writes a streamed token to `link`, whose flush may wait a little for the link's other streams' tokens
    /// (`LinkFlushCoalescer.streamDelay`).
    private func writeToken(_ token: ByteBuffer, to link: any Channel, promise: EventLoopPromise<Void>) {
        guard let coalescer else { return link.writeAndFlush(HTTPResponsePart.body(token), promise: promise) }
        coalescer.deferringFlushes { link.writeAndFlush(HTTPResponsePart.body(token), promise: promise) }
    }
}
