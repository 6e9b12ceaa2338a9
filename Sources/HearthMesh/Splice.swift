package import NIOCore
import NIOPosix

/// What one part read from a channel means for the byte stream it carries.
package enum SpliceInput {
    case bytes(ByteBuffer)
    /// The other side finished sending (an HTTP end part, or TCP's half-close).
    case end
    /// A part that carries no bytes (a head).
    case none
}

/// How a channel carries a byte stream: raw TCP, or the body of an HTTP stream.
package protocol SpliceFraming {
    associatedtype InboundIn
    associatedtype OutboundOut
    static func input(_ part: InboundIn) -> SpliceInput
    static func output(_ bytes: ByteBuffer) -> OutboundOut
    /// The part that ends the outbound direction, or `nil` to half-close the channel's output instead.
    static var end: OutboundOut? { get }
}

/// Raw bytes on a TCP connection; the end of a direction is a half-close.
package enum TCPFraming: SpliceFraming {
    package static func input(_ part: ByteBuffer) -> SpliceInput { .bytes(part) }
    package static func output(_ bytes: ByteBuffer) -> ByteBuffer { bytes }
    package static var end: ByteBuffer? { nil }
}

/// The messages one end of a splice sends the other, each run on the receiver's event loop.
protocol SpliceParty: AnyObject {
    func partnerAttached(_ partner: SplicePeer, counting: (@Sendable (Int) -> Void)?)
    func partnerStarted()
    func partnerSent(_ bytes: ByteBuffer)
    func partnerFlushed()
    func partnerWrote(_ count: Int)
    func partnerEnded()
    func partnerWritability(_ writable: Bool)
    func partnerGone()
}

/// A handle on one end of a splice that any thread may hold: every message hops to that end's event loop, in the
/// order sent (`execute` keeps the order of one sender, and each end only sends from its own loop).
package struct SplicePeer: Sendable {
    let eventLoop: any EventLoop
    private let party: NIOLoopBound<any SpliceParty>

    init(_ party: any SpliceParty, eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
        self.party = NIOLoopBound(party, eventLoop: eventLoop)
    }

    func send(_ message: @escaping @Sendable (any SpliceParty) -> Void) {
        let party = self.party
        eventLoop.execute { message(party.value) }
    }

    fileprivate func submit(_ message: @escaping @Sendable (any SpliceParty) -> Void) -> EventLoopFuture<Void> {
        let party = self.party
        return eventLoop.submit { message(party.value) }
    }
}

/// Joins two channels' byte streams on their event loops, nginx-style: what one side reads is written to the other
/// without a hop through Swift's task pool, and a side reads only while the other can take more (a stalled reader
/// stops the writer at the windows and socket buffers, instead of filling memory). "Can take more" is two things:
/// the other channel is writable, and fewer than `Splice.unwrittenLimit` bytes sent to it wait on its event loop
/// (the two loops may run at different speeds, and a hop between them is an unbounded queue).
///
/// Each end is a `SpliceHandler` in its channel. Before they are joined, an end reads until it has some bytes (so a
/// response head can be read) and holds them. A side's end is passed on as that framing's end; when either channel
/// closes or fails, the other is closed too.
package enum Splice {
    /// Bytes one end may have sent the other that the other has not written yet.
    static let unwrittenLimit = 256 << 10

    /// Joins `a` and `b`. `countingA` hears of every chunk read from `a` (and `countingB` from `b`).
    package static func join(
        _ a: SplicePeer,
        _ b: SplicePeer,
        countingA: (@Sendable (Int) -> Void)? = nil,
        countingB: (@Sendable (Int) -> Void)? = nil
    ) {
        // Both ends know each other before any byte or window message crosses.
        let attached = a.submit { $0.partnerAttached(b, counting: countingA) }
            .and(b.submit { $0.partnerAttached(a, counting: countingB) })
        attached.whenComplete { _ in
            a.send { $0.partnerStarted() }
            b.send { $0.partnerStarted() }
        }
    }
}

/// One end of a splice (see `Splice`).
package final class SpliceHandler<Framing: SpliceFraming>: ChannelDuplexHandler, RemovableChannelHandler, SpliceParty {
    package typealias InboundIn = Framing.InboundIn
    package typealias OutboundIn = Framing.OutboundOut
    package typealias OutboundOut = Framing.OutboundOut

    private let eventLoop: any EventLoop
    private var context: ChannelHandlerContext?
    private var partner: SplicePeer?
    private var started = false
    private var counting: (@Sendable (Int) -> Void)?
    /// Read before the ends were joined, handed over once they are.
    private var early: [SpliceInput] = []
    /// Read in this read cycle, sent to the other end in one message with its flush when the cycle completes: one
    /// hop to the other end's event loop per cycle instead of one per chunk and one more for the flush.
    private var outgoing: [ByteBuffer] = []
    private var partnerWritable = true
    /// Sent to the other end and not yet written by it.
    private var unwritten = 0
    /// Written here since the other end was last told.
    private var written = 0
    private var heldRead = false
    private var inputEnded = false
    private var outputEnded = false
    /// Completes once this side's end is written: everything the other end sent is out.
    private var outputFinished: EventLoopFuture<Void>?
    private var closed = false
    /// The channel failed, or was closed because the other end was gone: its close is no clean end.
    private var failed = false

    /// Call on `eventLoop`, where the handler will live (a channel initializer is).
    package init(eventLoop: any EventLoop, early: [SpliceInput] = []) {
        self.eventLoop = eventLoop
        self.early = early
    }

    /// How the other end reaches this one; ask on the handler's event loop.
    package var peer: SplicePeer { SplicePeer(self, eventLoop: eventLoop) }

    package func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: This channel

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Framing.input(unwrapInboundIn(data)) {
        case .bytes(let bytes):
            // A copy of just these bytes: what was read is often a slice of a parser's buffer (HTTP/2's frame
            // decoder keeps one, and reuses it for the next read), and a slice still queued on the other side
            // would make that reuse copy the parser's whole buffer on write.
            take(.bytes(context.channel.allocator.buffer(buffer: bytes)))
        case let input:
            take(input)
        }
    }

    private func take(_ input: SpliceInput) {
        switch input {
        case .none:
            return
        case .bytes(let bytes):
            counting?(bytes.readableBytes)
            if started, partner != nil {
                unwritten += bytes.readableBytes
                outgoing.append(bytes)
            } else {
                early.append(input)
            }
        case .end:
            guard !inputEnded else { return }
            inputEnded = true
            if started, let partner {
                sendOutgoing()
                partner.send { $0.partnerEnded() }
            } else {
                early.append(input)
            }
            closeWhenBothEnded()
        }
    }

    /// Sends what this read cycle read to the other end, flushed, in one message.
    private func sendOutgoing() {
        guard !outgoing.isEmpty, let partner else { return }
        let chunks = outgoing
        outgoing = []
        partner.send { other in
            for chunk in chunks { other.partnerSent(chunk) }
            other.partnerFlushed()
        }
    }

    package func channelReadComplete(context: ChannelHandlerContext) {
        sendOutgoing()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            take(.end)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    package func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        partner?.send { $0.partnerWritability(writable) }
        context.fireChannelWritabilityChanged()
    }

    package func channelInactive(context: ChannelHandlerContext) {
        // A clean close that came without an end is one: NIO reads to the EOF, and after our own half-close it closes
        // the socket without an `inputClosed`. Passed on as an end, so the other side sends what it holds first.
        if !failed && !inputEnded { take(.end) }
        closed = true
        sendOutgoing()
        partner?.send { $0.partnerGone() }
        context.fireChannelInactive()
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failed = true
        context.close(promise: nil)
    }

    package func read(context: ChannelHandlerContext) {
        // Held while the other side cannot take more, and before the join once something is waiting for it.
        if !partnerWritable || unwritten >= Splice.unwrittenLimit || (!started && !early.isEmpty) {
            heldRead = true
        } else {
            context.read()
        }
    }

    private func releaseRead() {
        guard heldRead, partnerWritable, unwritten < Splice.unwrittenLimit, started, let context else { return }
        heldRead = false
        context.read()
    }

    private func closeWhenBothEnded() {
        // TCP keeps a connection open after both half-closes; an HTTP stream closes by itself.
        guard inputEnded, Framing.end == nil, let outputFinished, let channel = context?.channel else { return }
        outputFinished.whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: The other end's messages

    func partnerAttached(_ partner: SplicePeer, counting: (@Sendable (Int) -> Void)?) {
        self.partner = partner
        self.counting = counting
        for case .bytes(let bytes) in early { counting?(bytes.readableBytes) }
    }

    func partnerStarted() {
        guard let partner, !started else { return }
        started = true
        if closed {
            partner.send { $0.partnerGone() }
            return
        }
        if let context, !context.channel.isWritable { partner.send { $0.partnerWritability(false) } }
        let early = self.early
        self.early = []
        for input in early {
            switch input {
            case .bytes(let bytes):
                unwritten += bytes.readableBytes
                partner.send { $0.partnerSent(bytes) }
            case .end: partner.send { $0.partnerEnded() }
            case .none: break
            }
        }
        if !early.isEmpty { partner.send { $0.partnerFlushed() } }
        heldRead = true
        releaseRead()
    }

    func partnerSent(_ bytes: ByteBuffer) {
        // Counted even when dropped (this side closed), so the other end never waits on bytes that cannot come.
        written += bytes.readableBytes
        guard let context, !outputEnded else { return }
        // A write past the channel's high watermark turns it unwritable, which `channelWritabilityChanged` tells
        // the other end.
        context.write(wrapOutboundOut(Framing.output(bytes)), promise: nil)
    }

    func partnerFlushed() {
        context?.flush()
        if written > 0, let partner {
            let count = written
            written = 0
            partner.send { $0.partnerWrote(count) }
        }
    }

    func partnerWrote(_ count: Int) {
        unwritten -= count
        releaseRead()
    }

    func partnerEnded() {
        guard let context, !outputEnded else { return }
        outputEnded = true
        if let end = Framing.end {
            outputFinished = context.writeAndFlush(wrapOutboundOut(end))
        } else {
            // Every byte on the wire first: NIO turns a half-close of a half-closed socket into a close that drops
            // queued writes, and an empty write completes only after those before it.
            let channel = context.channel
            outputFinished = context.writeAndFlush(wrapOutboundOut(Framing.output(ByteBuffer()))).flatMap {
                channel.close(mode: .output)
            }
        }
        closeWhenBothEnded()
    }

    func partnerWritability(_ writable: Bool) {
        partnerWritable = writable
        releaseRead()
    }

    func partnerGone() {
        failed = true
        guard let channel = context?.channel else { return }
        // After the other end's own end, its close is no failure: what it sent goes out first (an HTTP/2 stream
        // closed with data still waiting for its window would drop it).
        if let outputFinished {
            outputFinished.whenComplete { _ in channel.close(promise: nil) }
        } else {
            channel.close(promise: nil)
        }
    }
}

/// A TCP connection on this machine whose bytes are to be spliced to a link stream.
package struct SplicedConnection: Sendable {
    package let channel: any Channel
    package let peer: SplicePeer

    /// Adds the splice's end to a new connection's pipeline; call in its initializer, on its event loop.
    package static func prepare(_ channel: any Channel) throws -> SplicedConnection {
        let handler = SpliceHandler<TCPFraming>(eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandler(handler)
        return SplicedConnection(channel: channel, peer: handler.peer)
    }

    /// Connects to `port` on 127.0.0.1, ready to splice; on `eventLoop` when given (the other end's, so the splice
    /// never wakes a second thread).
    package static func connect(port: Int, on eventLoop: (any EventLoop)? = nil, timeout: TimeAmount = .seconds(3)) async throws -> SplicedConnection
    {
        try await ClientBootstrap(group: eventLoop ?? MultiThreadedEventLoopGroup.singleton.next())
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try prepare(channel) }
            }
    }

    package func close() {
        channel.close(promise: nil)
    }
}
