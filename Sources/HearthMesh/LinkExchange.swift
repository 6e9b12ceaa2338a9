package import NIOCore
package import NIOHTTP1
package import NIOHTTP2
import Synchronization

/// The gateway's side of a link's HTTP/2 connection: the node dialed it, and the gateway is the HTTP/2 client.
package typealias LinkMultiplexer = NIOHTTP2Handler.AsyncStreamMultiplexer<Void>

/// A response read from one stream of a link.
package struct LinkResponse: Sendable {
    package var head: HTTPResponseHead
    /// The body as it arrives, with backpressure: the node's stream window only opens as it is read.
    package var body: LinkResponseBody
}

/// One HTTP exchange per HTTP/2 stream, as HTTP/1 parts.
package enum LinkExchange {
    /// Opens a stream, sends one request and waits for the response head. Cancelling the calling task before the
    /// head arrives resets the stream; so does dropping the body before its end.
    /// - Throws: `LinkError` or a channel error when the stream fails before the head.
    package static func send(
        on multiplexer: LinkMultiplexer,
        head: HTTPRequestHead,
        body: ByteBuffer?
    ) async throws -> LinkResponse {
        let (channel, responseHead, responseBody) = try await openStream(on: multiplexer)
        var head = head
        if let body { head.headers.replaceOrAdd(name: "content-length", value: String(body.readableBytes)) }
        if !head.headers.contains(name: "host") { head.headers.add(name: "host", value: "hearth-node") }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        return LinkResponse(head: try await waitForHead(responseHead, on: channel), body: responseBody)
    }

    /// A new stream speaking HTTP/1 parts: the channel to write the request to, the response head to come and its
    /// body.
    static func openStream(
        on multiplexer: LinkMultiplexer
    ) async throws -> (channel: any Channel, head: EventLoopFuture<HTTPResponseHead>, body: LinkResponseBody) {
        try await multiplexer.openStream { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .https))
                let handler = LinkResponseHandler(eventLoop: channel.eventLoop)
                try channel.pipeline.syncOperations.addHandler(handler)
                return (channel, handler.head, handler.takeBody())
            }
        }
    }

    /// Waits for the response head; cancelling the caller resets the stream.
    static func waitForHead(_ head: EventLoopFuture<HTTPResponseHead>, on channel: any Channel) async throws -> HTTPResponseHead {
        try await withTaskCancellationHandler {
            try await head.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// A response body from a link stream. Read by one task from start to end; `next()` is not thread-safe.
package final class LinkResponseBody: @unchecked Sendable {
    /// The trailers, set by the handler before it finishes the body; read after `next()` returned `nil`.
    let trailerBox = TrailerBox()

    /// The trailers the node sent after the body, once the body has ended.
    package var trailers: HTTPHeaders? { trailerBox.value }

    typealias Sequence = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, LinkResponseHandler.Delegate
    >
    private var iterator: Sequence.AsyncIterator?
    private let sequence: Sequence

    init(_ sequence: Sequence) {
        self.sequence = sequence
    }

    /// The next chunk, or `nil` at the end.
    package func next() async throws -> ByteBuffer? {
        if iterator == nil { iterator = sequence.makeAsyncIterator() }
        return try await iterator!.next()
    }

    /// Reads the rest of the body, up to `limit` bytes.
    package func collect(upTo limit: Int) async throws -> ByteBuffer {
        var all = ByteBuffer()
        while var chunk = try await next() {
            guard all.readableBytes + chunk.readableBytes <= limit else { throw LinkError.tooLarge }
            all.writeBuffer(&chunk)
        }
        return all
    }
}

/// Turns a client stream's HTTP/1 parts into a response head and a backpressured body.
/// It reads from the stream only while the body's reader wants more, which holds back the HTTP/2 window.
final class LinkResponseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    struct Delegate: NIOAsyncSequenceProducerDelegate {
        let eventLoop: any EventLoop
        let handler: NIOLoopBound<LinkResponseHandler>

        func produceMore() {
            eventLoop.execute { handler.value.produceMore() }
        }

        func didTerminate() {
            eventLoop.execute { handler.value.readerGone() }
        }
    }

    private let headPromise: EventLoopPromise<HTTPResponseHead>
    private var source: LinkResponseBody.Sequence.Source!
    /// Handed out once: the handler must not keep the body alive, or dropping it could not reset the stream.
    private var sequence: LinkResponseBody.Sequence?
    private var trailerBox: TrailerBox?
    private var context: ChannelHandlerContext?
    private var headReceived = false
    private var ended = false
    private var wantsMore = true

    var head: EventLoopFuture<HTTPResponseHead> { headPromise.futureResult }

    init(eventLoop: any EventLoop) {
        headPromise = eventLoop.makePromise()
        let produced = LinkResponseBody.Sequence.makeSequence(
            backPressureStrategy: .init(lowWatermark: 4, highWatermark: 16),
            finishOnDeinit: false,
            delegate: Delegate(eventLoop: eventLoop, handler: NIOLoopBound(self, eventLoop: eventLoop))
        )
        source = produced.source
        sequence = produced.sequence
    }

    /// The response body; call once.
    func takeBody() -> LinkResponseBody {
        defer { sequence = nil }
        let body = LinkResponseBody(sequence!)
        trailerBox = body.trailerBox
        return body
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        // A stream torn down without going inactive first must still answer whoever waits for its head or body.
        fail(LinkError.closed)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard head.status.code >= 200 else { return }
            headReceived = true
            headPromise.succeed(head)
        case .body(let buffer):
            // A copy of just these bytes: the body is a slice of HTTP/2's frame decoder buffer (shared by every stream
            // of the link), and a slice kept by a stream's reader between events would pin a whole decoder buffer per
            // stream (measured: ~140 KiB of gateway memory per open stream).
            switch source.yield(context.channel.allocator.buffer(buffer: buffer)) {
            case .produceMore: break
            case .stopProducing: wantsMore = false
            case .dropped: context.close(promise: nil)
            }
        case .end(let trailers):
            ended = true
            trailerBox?.set(trailers)
            source.finish()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if wantsMore && !ended { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(LinkError.closed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    private func fail(_ error: any Error) {
        if !headReceived {
            headReceived = true
            headPromise.fail(error)
        }
        if !ended {
            ended = true
            source.finish(LinkError.truncated)
        }
    }

    fileprivate func produceMore() {
        wantsMore = true
        if !ended { context?.read() }
    }

    /// The reader dropped the body or was cancelled: reset the stream unless it already ended.
    fileprivate func readerGone() {
        if !ended { context?.close(promise: nil) }
    }
}

/// Trailers handed from the event loop to the body's reader.
final class TrailerBox: Sendable {
    private let trailers = Mutex<HTTPHeaders?>(nil)
    var value: HTTPHeaders? { trailers.withLock { $0 } }
    func set(_ value: HTTPHeaders?) { trailers.withLock { $0 = value } }
}
