package import NIOCore
import NIOHTTP2

/// Measures a link's round trip with HTTP/2 PING frames. The peer's HTTP/2 stack answers a PING itself, so the time is
/// the network's and the peer's event loop's, with no request handling in it: what the pool planner means by a
/// node's latency to the gateway (every token of a pool crosses each member's link).
///
/// It sits after the HTTP/2 handler, which passes the connection's own frames (stream 0) on; PING acknowledgements
/// stop here, everything else goes on.
final class LinkRoundTripHandler: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias InboundOut = HTTP2Frame

    /// At most this many PINGs wait for their answer; a link that answers none is not sent more.
    static let maxOutstanding = 4

    private var context: ChannelHandlerContext?
    private var outstanding: [UInt64: (sent: NIODeadline, answer: EventLoopPromise<Duration>)] = [:]
    private var nextPayload: UInt64 = 0

    init() {}

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failOutstanding()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        failOutstanding()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .ping(let payload, ack: true) = frame.payload, let waiting = outstanding.removeValue(forKey: payload.integer) {
            let elapsed = NIODeadline.now() - waiting.sent
            waiting.answer.succeed(.nanoseconds(elapsed.nanoseconds))
            return
        }
        context.fireChannelRead(data)
    }

    /// Sends one PING; the future completes with the time its acknowledgement took.
    fileprivate func ping(on eventLoop: any EventLoop) -> EventLoopFuture<Duration> {
        guard let context, context.channel.isActive else { return eventLoop.makeFailedFuture(LinkError.closed) }
        guard outstanding.count < Self.maxOutstanding else { return eventLoop.makeFailedFuture(LinkError.timedOut) }
        nextPayload &+= 1
        let answer = eventLoop.makePromise(of: Duration.self)
        outstanding[nextPayload] = (NIODeadline.now(), answer)
        let frame = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: nextPayload), ack: false))
        context.writeAndFlush(NIOAny(frame), promise: nil)
        return answer.futureResult
    }

    private func failOutstanding() {
        let waiting = outstanding.values
        outstanding = [:]
        for entry in waiting { entry.answer.fail(LinkError.closed) }
    }
}

/// A link's round-trip meter, usable from any task.
package struct LinkRoundTrip: Sendable {
    private let handler: NIOLoopBound<LinkRoundTripHandler>
    private let eventLoop: any EventLoop

    /// Adds the handler to `channel`'s pipeline, after its HTTP/2 handler. Call on the channel's event loop.
    package static func add(to channel: any Channel) throws -> LinkRoundTrip {
        let handler = LinkRoundTripHandler()
        try channel.pipeline.syncOperations.addHandler(handler)
        return LinkRoundTrip(handler: NIOLoopBound(handler, eventLoop: channel.eventLoop), eventLoop: channel.eventLoop)
    }

    /// One round trip over the link, PING to acknowledgement. Fails with `LinkError.closed` when the link is closed (or
    /// closes before the answer), `LinkError.timedOut` while earlier PINGs are still unanswered.
    package func measure() -> EventLoopFuture<Duration> {
        if eventLoop.inEventLoop { return handler.value.ping(on: eventLoop) }
        return eventLoop.flatSubmit { handler.value.ping(on: eventLoop) }
    }
}
