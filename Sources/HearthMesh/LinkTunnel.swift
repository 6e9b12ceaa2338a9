import HearthCore
import NIOCore
import NIOHTTP1
import NIOHTTP2

/// A full-duplex byte stream over one HTTP/2 stream of a link: to a TCP service the node exposes on its loopback
/// (`POST /link/v1/tunnel/{service}`), or one of a pool's streams. It carries bytes only once spliced to another
/// stream or a local connection (`Splice`): on the event loops, with each side reading only as fast as the other
/// takes, so a slow end slows the other down instead of filling memory.
package final class LinkTunnel: Sendable {
    private let channel: any Channel
    let peer: SplicePeer

    private init(channel: any Channel, peer: SplicePeer) {
        self.channel = channel
        self.peer = peer
    }

    /// Opens a tunnel to `service` on a node.
    /// - Throws: `LinkTunnelError.refused` when the node has no such service or cannot reach it; link errors.
    package static func open(on multiplexer: LinkMultiplexer, service: String) async throws -> LinkTunnel {
        try await open(on: multiplexer, path: LinkProtocol.Path.tunnel(service))
    }

    /// Opens a byte stream on any of the node's stream routes (`POST path`); returns once the node answered 200,
    /// which for a pool's peer stream is when the head's engine connects.
    package static func open(on multiplexer: LinkMultiplexer, path: String) async throws -> LinkTunnel {
        let (channel, head, peer) = try await multiplexer.openStream { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: .https))
                let head = TunnelHeadHandler(eventLoop: channel.eventLoop)
                try sync.addHandler(head)
                let splice = SpliceHandler<LinkClientFraming>(eventLoop: channel.eventLoop)
                try sync.addHandler(splice)
                return (channel, head.answered, splice.peer)
            }
        }
        var request = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        request.headers.add(name: "host", value: "hearth-node")
        request.headers.add(name: "content-type", value: "application/octet-stream")
        channel.writeAndFlush(HTTPClientRequestPart.head(request), promise: nil)
        do {
            _ = try await LinkExchange.waitForHead(head, on: channel)
        } catch {
            channel.close(promise: nil)
            throw error
        }
        return LinkTunnel(channel: channel, peer: peer)
    }

    /// Joins this stream to `other` both ways; `counting` hears of every chunk, `true` for what this stream read.
    /// The two end together: when either closes, so does the other.
    package func splice(with other: LinkTunnel, counting: (@Sendable (_ fromThis: Bool, _ bytes: Int) -> Void)? = nil) {
        var fromThis: (@Sendable (Int) -> Void)?
        var fromOther: (@Sendable (Int) -> Void)?
        if let counting {
            fromThis = { counting(true, $0) }
            fromOther = { counting(false, $0) }
        }
        Splice.join(peer, other.peer, countingA: fromThis, countingB: fromOther)
    }

    /// Joins this stream to a local connection, both ways.
    package func splice(with connection: SplicedConnection) {
        Splice.join(peer, connection.peer)
    }

    /// Resets the stream: both directions end at once.
    package func close() {
        channel.close(promise: nil)
    }
}

/// The body of a link stream the gateway opened, as the HTTP/1 parts its codec speaks.
enum LinkClientFraming: SpliceFraming {
    static func input(_ part: HTTPClientResponsePart) -> SpliceInput {
        switch part {
        case .head: .none
        case .body(let bytes): .bytes(bytes)
        case .end: .end
        }
    }
    static func output(_ bytes: ByteBuffer) -> HTTPClientRequestPart { .body(.byteBuffer(bytes)) }
    static var end: HTTPClientRequestPart? { .end(nil) }
}

/// Waits for a tunnel's answer: on 200 it leaves the pipeline to the splice; otherwise it reads up to 4 KiB of the
/// node's error and fails the open with it.
final class TunnelHeadHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart

    private enum State {
        case waiting
        case open
        case refused(status: Int, message: ByteBuffer)
        case settled
    }

    private let promise: EventLoopPromise<HTTPResponseHead>
    private var state = State.waiting
    var answered: EventLoopFuture<HTTPResponseHead> { promise.futureResult }

    init(eventLoop: any EventLoop) {
        promise = eventLoop.makePromise()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (state, unwrapInboundIn(data)) {
        case (.open, _):
            context.fireChannelRead(data)
        case (.waiting, .head(let head)) where head.status.code >= 200:
            if head.status == .ok {
                state = .open
                promise.succeed(head)
                // The body goes straight to the splice from now on.
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            } else {
                state = .refused(status: Int(head.status.code), message: ByteBuffer())
            }
        case (.refused(let status, var message), .body(var bytes)):
            let room = max(0, 4096 - message.readableBytes)
            if let slice = bytes.readSlice(length: min(bytes.readableBytes, room)) { message.writeImmutableBuffer(slice) }
            state = .refused(status: status, message: message)
        case (.refused, .end):
            settle()
            context.close(promise: nil)
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        settle()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        settle()
    }

    /// A refusal fails the open with the node's words; a stream that ends before its answer fails it as closed.
    private func settle() {
        switch state {
        case .waiting: promise.fail(LinkError.closed)
        case .refused(let status, let message): promise.fail(LinkTunnelError.refused(status: status, message: String(buffer: message)))
        case .open, .settled: return
        }
        state = .settled
    }
}

/// A tunnel could not be opened.
enum LinkTunnelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The node answered with an error instead of opening the stream.
    case refused(status: Int, message: String)

    var description: String {
        switch self {
        case .refused(let status, let message): "the node refused the tunnel (HTTP \(status)): \(message)"
        }
    }
}
