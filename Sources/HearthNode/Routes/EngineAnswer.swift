import HearthCore
import NIOCore
import NIOHTTP1

/// A whole (not streamed) answer read from an engine on one event loop, the link stream's: `EngineConnection` reads
/// the engine's connection there and hands each part to this reader there, and the route's task, which runs on that
/// loop too, waits for the head and then the body.
///
/// AsyncHTTPClient's `async` API started a task of its own per request (to register it for cancellation) and
/// streamed the body through an async sequence read by another: each a pool thread woken, and hops back to the loop,
/// on the path of every whole answer.
final class EngineAnswer: EngineResponseReader, @unchecked Sendable {
    /// The most of an error answer that is kept, to be restated for the gateway.
    static let refusalLimit = 64 << 10

    struct AnswerTooLong: Error {}

    // Everything below is touched only on `eventLoop`: `EngineConnection` calls the reader there, and `send` and
    // `cancel` hop to it.
    let eventLoop: any EventLoop
    private let head: EventLoopPromise<HTTPResponseHead>
    private let body: EventLoopPromise<ByteBuffer>
    private var collected = ByteBuffer()
    private let limit: Int
    /// An error answer: only its first `refusalLimit` bytes are kept, the rest is read and dropped.
    private var keepsOnlyTheStart = false
    private var exchange: EngineExchange?

    /// An answer read on `eventLoop`, failing past `limit` bytes.
    init(on eventLoop: any EventLoop, limit: Int = UsageBounds.largestWholeAnswer) {
        self.eventLoop = eventLoop
        self.limit = limit
        head = eventLoop.makePromise()
        body = eventLoop.makePromise()
    }

    /// Sends `request` to the engine from this answer's loop (see `EngineRelay.send`).
    func send(_ request: EngineRequest) {
        let exchange = EngineConnection.send(request, on: eventLoop, to: self)
        eventLoop.execute { self.exchange = exchange }
    }

    /// The engine's response head; throws when the engine did not answer, or the waiting task was cancelled.
    func responseHead() async throws -> HTTPResponseHead {
        try await head.futureResult.get(cancelling: cancel)
    }

    /// The whole body (of an error answer, its first `refusalLimit` bytes); throws when the engine's answer broke
    /// off, was too long, or was cancelled.
    func wholeBody() async throws -> ByteBuffer {
        try await body.futureResult.get(cancelling: cancel)
    }

    /// Drops the engine's request (its connection is closed, which stops the generation).
    func cancel() {
        eventLoop.execute { self.exchange?.cancel() }
    }

    // MARK: EngineResponseReader, on `eventLoop`

    func engineHead(_ head: HTTPResponseHead) {
        keepsOnlyTheStart = head.status != .ok
        self.head.succeed(head)
    }

    func engineBody(_ buffer: ByteBuffer) -> EventLoopFuture<Void>? {
        var buffer = buffer
        let room = (keepsOnlyTheStart ? Self.refusalLimit : limit) - collected.readableBytes
        guard buffer.readableBytes <= room else {
            guard keepsOnlyTheStart else { return eventLoop.makeFailedFuture(AnswerTooLong()) }
            // An error answer is only restated: its start is enough.
            if var start = buffer.readSlice(length: room) { collected.writeBuffer(&start) }
            return nil
        }
        collected.writeBuffer(&buffer)
        return nil
    }

    func engineEnd() {
        body.succeed(collected)
    }

    func engineFailed(_ error: any Error) {
        head.fail(error)
        body.fail(error)
    }
}

extension EventLoopFuture {
    /// The future's value; a cancellation of the waiting task calls `cancel` (which should make the future fail soon).
    func get(cancelling cancel: @escaping @Sendable () -> Void) async throws -> Value where Value: Sendable {
        try await withTaskCancellationHandler {
            try await get()
        } onCancel: {
            cancel()
        }
    }
}
