import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import Synchronization

@testable import HearthCore
@testable import HearthMesh

/// Both ends of a link over real TLS on loopback, built the way the gateway and the node build them, with the pins
/// and TLS configurations under test.
struct LinkHarness {
    /// The gateway's side: proven peer, the multiplexer it opens streams with, and its round-trip meter.
    struct Accepted: Sendable {
        var peer: EventLoopFuture<NodeID>
        var multiplexer: LinkMultiplexer
        var roundTrip: LinkRoundTrip
    }

    /// Dials a listening gateway as a node would. `serve` answers each stream the gateway opens.
    static func dial(
        port: Int,
        tls: TLSConfiguration,
        pin: LinkPin,
        log: StreamLog = StreamLog()
    ) async throws -> (channel: any Channel, peer: EventLoopFuture<NodeID>) {
        let context = try NIOSSLContext(configuration: tls)
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallback: LinkTLS.verifier(pin: pin))
                    )
                    let handshake = LinkHandshakeHandler(eventLoop: channel.eventLoop)
                    try sync.addHandler(handshake)
                    // The links' own HTTP/2 settings (stream limit, windows), as `LinkDial` has them.
                    _ = try sync.configureHTTP2Pipeline(
                        mode: .server,
                        connectionConfiguration: LinkHTTP2.configuration.connection,
                        streamConfiguration: LinkHTTP2.configuration.stream
                    ) { stream in
                        stream.eventLoop.makeCompletedFuture {
                            try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                            try stream.pipeline.syncOperations.addHandler(EchoHandler(log: log))
                        }
                    }
                    return (channel, handshake.peer)
                }
            }
    }

    /// Listens as a gateway would; each accepted link is passed to `accepted`.
    static func listen(
        tls: TLSConfiguration,
        pin: LinkPin,
        accepted: @escaping @Sendable (Accepted) -> Void
    ) async throws -> any Channel {
        let context = try NIOSSLContext(configuration: tls)
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLServerHandler(context: context, customVerificationCallback: LinkTLS.verifier(pin: pin)))
                    let handshake = LinkHandshakeHandler(eventLoop: channel.eventLoop)
                    try sync.addHandler(handshake)
                    let multiplexer = try sync.configureAsyncHTTP2Pipeline(mode: .client) { stream in stream.close() }
                    accepted(Accepted(peer: handshake.peer, multiplexer: multiplexer, roundTrip: try LinkRoundTrip.add(to: channel)))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }
}

/// What the node's side of the harness saw: streams that closed before their response ended.
final class StreamLog: Sendable {
    private let resets = Atomic<Int>(0)
    private let heldEnds = Atomic<Int>(0)
    private let held = Mutex<[@Sendable () -> Void]>([])
    var resetCount: Int { resets.load(ordering: .relaxed) }
    /// `/hold` streams the node has finished answering.
    var heldEnded: Int { heldEnds.load(ordering: .relaxed) }
    func reset() { resets.add(1, ordering: .relaxed) }
    func heldEnd() { heldEnds.add(1, ordering: .relaxed) }
    /// Keeps a `/hold` stream's end until `releaseHeld`.
    func hold(_ end: @escaping @Sendable () -> Void) { held.withLock { $0.append(end) } }
    /// Ends every `/hold` stream held so far.
    func releaseHeld() {
        for end in held.withLock({ held in
            defer { held = [] }
            return held
        }) { end() }
    }
}

/// Answers every request with its URI and body echoed; `/slow` instead streams fifty chunks 20 ms apart (`/endless`
/// until its stream closes), `/hold`
/// sends its head and ends when the test releases it (`StreamLog.releaseHeld`), and `/abort` sends one chunk and resets its stream.
final class EchoHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let log: StreamLog
    private var uri = ""
    private var body = ByteBuffer()
    private var ended = false

    init(log: StreamLog) {
        self.log = log
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !ended { log.reset() }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): uri = head.uri
        case .body(var buffer): body.writeBuffer(&buffer)
        case .end: respond(context: context)
        }
    }

    private func respond(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/plain")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        if uri.hasPrefix("/abort") {
            // The node gives up mid-response (say its engine died): one chunk, then the stream is reset.
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "partial")))), promise: nil)
            context.close(promise: nil)
            return
        }
        if uri.hasPrefix("/hold") {
            // A stream held open until the test releases it: many of them cost the node almost nothing.
            context.flush()
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let loop = context.eventLoop
            log.hold {
                loop.execute {
                    guard loopContext.value.channel.isActive else { return }
                    handler.value.ended = true
                    handler.value.log.heldEnd()
                    loopContext.value.writeAndFlush(handler.value.wrapOutboundOut(.end(nil)), promise: nil)
                }
            }
            return
        }
        if uri.hasPrefix("/slow") || uri.hasPrefix("/endless") {
            // One chunk every 20 ms, 50 times (`/endless`: until the stream closes): a long stream next to quick ones.
            let loopContext = NIOLoopBound(context, eventLoop: context.eventLoop)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let endless = uri.hasPrefix("/endless")
            @Sendable func tick(_ remaining: Int) {
                let context = loopContext.value
                guard context.channel.isActive else { return }
                if remaining == 0 && !endless {
                    handler.value.ended = true
                    context.writeAndFlush(handler.value.wrapOutboundOut(.end(nil)), promise: nil)
                    return
                }
                context.writeAndFlush(handler.value.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: "tick\n")))), promise: nil)
                context.eventLoop.scheduleTask(in: .milliseconds(20)) { tick(remaining - 1) }
            }
            tick(50)
            return
        }
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: uri + "|")))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        ended = true
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
