import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// Where an engine listens: a managed llama-server on loopback, or the owner's own server (`--backend`).
struct EngineEndpoint: Sendable, Hashable {
    var host: String
    var port: Int
    var tls: Bool
    /// A path before the API's (`/v1/...`), from the owner's URL (a server behind a proxy's prefix); empty for most.
    var pathPrefix: String

    /// A managed engine's.
    init(loopbackPort port: Int) {
        host = "127.0.0.1"
        self.port = port
        tls = false
        pathPrefix = ""
    }

    /// The endpoint of `root` (`http(s)://host[:port][/prefix]`, as `BackendSettings.root` gives it); `nil` when it is
    /// not such a URL.
    init?(root: String) {
        let scheme: Substring
        var rest: Substring
        if root.hasPrefix("http://") {
            (scheme, rest) = ("http", root.dropFirst("http://".count))
        } else if root.hasPrefix("https://") {
            (scheme, rest) = ("https", root.dropFirst("https://".count))
        } else {
            return nil
        }
        let authority = rest.prefix { $0 != "/" }
        rest = rest.dropFirst(authority.count)
        var host = authority
        var port: Int? = scheme == "https" ? 443 : 80
        // A literal IPv6 address is bracketed; its colons are not the port's.
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { port = Int(after.dropFirst()) } else if !after.isEmpty { return nil }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            port = Int(authority[authority.index(after: colon)...])
        }
        guard !host.isEmpty, let port, (1...65535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
        tls = scheme == "https"
        pathPrefix = String(rest.hasSuffix("/") ? rest.dropLast() : rest)
    }

    /// The `Host` header's value.
    var hostHeader: String {
        let name = host.contains(":") ? "[\(host)]" : host
        return (tls && port == 443) || (!tls && port == 80) ? name : "\(name):\(port)"
    }
}

/// A request to an engine: a POST of a JSON body.
struct EngineRequest: Sendable {
    var endpoint: EngineEndpoint
    var path: String
    var headers: HTTPHeaders
    var body: ByteBuffer
    /// A ceiling for a runaway engine; the gateway's reset cancels the request much sooner.
    var deadline: NIODeadline
    /// TLS for an `https` endpoint whose owner names authorities of their own (`BackendTrust`); `nil`: the system's roots.
    var tls: NIOSSLContext? = nil
    /// How long the connection may wait idle for the next request once the answer is in, when it is kept.
    var idleTimeout = EngineConnection.idleTimeout
    /// How many connections to the endpoint may wait idle at once (`EngineAddress.idleLimit`); past it, one closes.
    var idleLimit = Int.max

    /// Whether the connection may carry another request after this one's answer.
    var keepsConnection: Bool { !headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" } }
}

/// What reads an engine's answer; called on the exchange's event loop.
protocol EngineResponseReader: AnyObject, Sendable {
    func engineHead(_ head: HTTPResponseHead)
    /// A part of the body, and `nil` when it was taken at once (the connection is read on). Otherwise the engine's
    /// connection is read no further until the returned future completes; a failed one drops the request (its
    /// connection is closed, which stops the generation).
    func engineBody(_ part: ByteBuffer) -> EventLoopFuture<Void>?
    /// The answer is whole.
    func engineEnd()
    /// The request failed: not connected, broken off, cancelled or past its deadline. At most once, never after
    /// `engineEnd`.
    func engineFailed(_ error: any Error)
}

/// Why an engine's exchange failed, where no channel error says it.
enum EngineExchangeError: Error, Equatable, CustomStringConvertible {
    case cancelled
    case deadlineExceeded
    /// The engine closed its connection before its answer ended (it died, or it closed a new connection unanswered).
    case closedEarly
    case notAURL

    var description: String {
        switch self {
        case .cancelled: "the request was cancelled"
        case .deadlineExceeded: "no answer within the deadline"
        case .closedEarly: "the engine closed the connection before its answer ended"
        case .notAURL: "the engine's address is not an http(s) URL"
        }
    }
}

/// The node's HTTP/1.1 client for its engines' completions, on the event loop of the link stream that asked: the
/// request's head and body go out in one write, and the answer's parts reach the reader there and then, with no task
/// and no hop between the engine's socket and the link. AsyncHTTPClient, which this replaces on that path, wrote a
/// request's head and body in two writes (the engine woke twice, 0.14 ms apart), and ran a connection pool, a request
/// state machine and a delegate hand-off per part of every answer (about a tenth of the node's CPU per answer and
/// per token, `perf`). The node's other exchanges with its engines (looks, templating, embeddings) keep it.
///
/// A connection is kept for the next request only when the request did not ask to close it (`EngineAddress
/// .keepsConnection`) and the engine's answer allows it, on the loop it was made on, for at most a second idle (servers
/// close kept connections after a few seconds: llama-server, uvicorn and Node's after 5), and while fewer than the
/// request's `idleLimit` to its engine wait idle on all loops together. One a server closed just as a
/// request went out on it (the connection lost before any answer came) has the request sent once more, on a new
/// connection, as browsers do: the server dropped it unread. A new connection lost so, or an answer broken off once
/// begun, fails the request.
enum EngineConnection {
    static let idleTimeout: TimeAmount = .seconds(1)
    static let connectTimeout: TimeAmount = .seconds(30)

    /// Sends `request` from `eventLoop`; the answer goes to `reader` there.
    static func send(_ request: EngineRequest, on eventLoop: any EventLoop, to reader: any EngineResponseReader) -> EngineExchange {
        let exchange = EngineExchange(request: request, eventLoop: eventLoop, reader: reader)
        eventLoop.execute { exchange.start() }
        return exchange
    }

    /// Connections kept idle, by event loop and endpoint; touched on their own loop only, but the table is shared.
    static let idle = IdleConnections()

    final class IdleConnections: Sendable {
        struct Key: Hashable {
            var loop: ObjectIdentifier
            var endpoint: EngineEndpoint
        }

        private let table = Mutex<[Key: [any Channel]]>([:])

        func take(_ endpoint: EngineEndpoint, on loop: any EventLoop) -> (any Channel)? {
            table.withLock { table in
                let key = Key(loop: ObjectIdentifier(loop), endpoint: endpoint)
                while let channel = table[key]?.popLast() {
                    if channel.isActive { return channel }
                }
                return nil
            }
        }

        /// Keeps `channel` idle unless `limit` connections to `endpoint` already are, on any loop; says whether it did.
        func put(_ channel: any Channel, _ endpoint: EngineEndpoint, limit: Int) -> Bool {
            table.withLock { table in
                guard Self.count(endpoint, in: table) < limit else { return false }
                table[Key(loop: ObjectIdentifier(channel.eventLoop), endpoint: endpoint), default: []].append(channel)
                return true
            }
        }

        /// The connections to `endpoint` waiting idle, on every loop.
        func count(_ endpoint: EngineEndpoint) -> Int {
            table.withLock { Self.count(endpoint, in: $0) }
        }

        private static func count(_ endpoint: EngineEndpoint, in table: [Key: [any Channel]]) -> Int {
            table.reduce(0) { $1.key.endpoint == endpoint ? $0 + $1.value.count : $0 }
        }

        func remove(_ channel: any Channel, _ endpoint: EngineEndpoint) {
            table.withLock { table in
                let key = Key(loop: ObjectIdentifier(channel.eventLoop), endpoint: endpoint)
                table[key]?.removeAll { $0 === channel }
                if table[key]?.isEmpty == true { table[key] = nil }
            }
        }
    }

    /// TLS for an owner's `https` server, verified against the system's roots as any client would.
    static let tls: Result<NIOSSLContext, any Error> = Result { try NIOSSLContext(configuration: .makeClientConfiguration()) }

    /// A connection to `endpoint` from `eventLoop` (over TLS with `context`, else the system's roots, when it is
    /// `https`). An address given as such (a managed engine's 127.0.0.1, an owner's server by its IP) is connected to
    /// at once: NIO resolves a name on a thread of its own, a hand-off per connection.
    static func connect(_ endpoint: EngineEndpoint, tls context: NIOSSLContext?, on eventLoop: any EventLoop) -> EventLoopFuture<any Channel> {
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if endpoint.tls {
                        let hostname = endpoint.host.contains(":") || endpoint.host.allSatisfy({ $0.isNumber || $0 == "." }) ? nil : endpoint.host
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context ?? tls.get(), serverHostname: hostname))
                    }
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(EngineConnectionHandler(endpoint: endpoint))
                }
            }
        if let address = try? SocketAddress(ipAddress: endpoint.host, port: endpoint.port) { return bootstrap.connect(to: address) }
        return bootstrap.connect(host: endpoint.host, port: endpoint.port)
    }
}

/// One request to an engine and its answer. Everything is touched on `eventLoop`.
final class EngineExchange: @unchecked Sendable {
    let eventLoop: any EventLoop
    fileprivate let request: EngineRequest
    /// Let go once told how the exchange ended: the reader keeps the exchange (to cancel it), and the two must not
    /// keep each other.
    private var reader: (any EngineResponseReader)?
    private var channel: (any Channel)?
    private var deadline: Scheduled<Void>?
    /// The reader has been told how it ended (`engineEnd` or `engineFailed`).
    private(set) var over = false
    /// The request went out on a connection kept from an earlier one, which its server may have closed meanwhile.
    private var onKeptConnection = false
    /// The engine's answer has begun: a connection lost from here on breaks it off.
    private var answered = false

    fileprivate init(request: EngineRequest, eventLoop: any EventLoop, reader: any EngineResponseReader) {
        self.request = request
        self.eventLoop = eventLoop
        self.reader = reader
    }

    /// Drops the request: its connection is closed, which stops the engine's generation.
    func cancel() {
        eventLoop.execute { self.fail(EngineExchangeError.cancelled) }
    }

    fileprivate func start() {
        deadline = eventLoop.scheduleTask(deadline: request.deadline) { self.fail(EngineExchangeError.deadlineExceeded) }
        if let kept = EngineConnection.idle.take(request.endpoint, on: eventLoop),
            let handler = try? kept.pipeline.syncOperations.handler(type: EngineConnectionHandler.self)
        {
            onKeptConnection = true
            return run(on: kept, handler: handler)
        }
        connect()
    }

    private func connect() {
        EngineConnection.connect(request.endpoint, tls: request.tls, on: eventLoop).whenComplete { result in
            switch result {
            case .success(let channel):
                guard !self.over, let handler = try? channel.pipeline.syncOperations.handler(type: EngineConnectionHandler.self) else {
                    channel.close(promise: nil)
                    return
                }
                self.run(on: channel, handler: handler)
            case .failure(let error):
                self.fail(error)
            }
        }
    }

    private func run(on channel: any Channel, handler: EngineConnectionHandler) {
        guard !over else {
            channel.close(promise: nil)
            return
        }
        self.channel = channel
        handler.begin(self)
    }

    fileprivate func received(_ head: HTTPResponseHead) {
        answered = true
        reader?.engineHead(head)
    }

    /// The connection closed or failed under the request: sent again on a new one when it was a kept connection and
    /// no answer had begun (the server closed it idle as the request went out), else the exchange fails.
    fileprivate func connectionLost(_ error: any Error) {
        guard !over else { return }
        guard onKeptConnection, !answered else { return fail(error) }
        onKeptConnection = false
        channel = nil
        connect()
    }

    fileprivate func received(_ part: ByteBuffer) -> EventLoopFuture<Void>? {
        reader?.engineBody(part)
    }

    /// The answer ended whole; the connection has been kept or closed by its handler.
    fileprivate func end() {
        guard !over else { return }
        over = true
        deadline?.cancel()
        channel = nil
        let reader = self.reader
        self.reader = nil
        reader?.engineEnd()
    }

    fileprivate func fail(_ error: any Error) {
        guard !over else { return }
        over = true
        deadline?.cancel()
        channel?.close(promise: nil)
        channel = nil
        let reader = self.reader
        self.reader = nil
        reader?.engineFailed(error)
    }
}

/// An engine connection's handler: sends one exchange's request at a time and hands its answer's parts to the reader,
/// reading the socket only while the reader keeps up.
private final class EngineConnectionHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Never
    typealias OutboundOut = HTTPClientRequestPart

    private let endpoint: EngineEndpoint
    private var context: ChannelHandlerContext?
    private var exchange: EngineExchange?
    private var keepAlive = false
    /// Body parts whose futures the reader has not completed: the socket is read no further until they are.
    private var waiting = 0
    private var endWaiting = false
    private var idleTimer: Scheduled<Void>?

    init(endpoint: EngineEndpoint) {
        self.endpoint = endpoint
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func begin(_ exchange: EngineExchange) {
        guard let context else { return exchange.connectionLost(EngineExchangeError.closedEarly) }
        idleTimer?.cancel()
        idleTimer = nil
        self.exchange = exchange
        let request = exchange.request
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: endpoint.pathPrefix + request.path, headers: request.headers)
        head.headers.replaceOrAdd(name: "host", value: endpoint.hostHeader)
        head.headers.replaceOrAdd(name: "content-length", value: String(request.body.readableBytes))
        keepAlive = request.keepsConnection
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if request.body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(request.body))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let exchange else {
            // Bytes on an idle connection answer nothing that was asked: it cannot carry a request any more.
            return context.close(promise: nil)
        }
        guard !exchange.over else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard head.status.code >= 200 else { return }
            keepAlive = keepAlive && head.isKeepAlive
            exchange.received(head)
        case .body(let part):
            // Taken at once, as a relay takes a streamed token while its link stream takes more: read on, with no
            // future and callback per part.
            guard let taken = exchange.received(part) else { return }
            waiting += 1
            // The reader's futures are on this loop (it is the link stream's, where the connection was made): `hop`
            // costs nothing then.
            taken.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
                self.waiting -= 1
                if case .failure(let error) = result { return exchange.fail(error) }
                if self.waiting == 0 {
                    if self.endWaiting { self.finish() } else { self.context?.read() }
                }
            }
        case .end:
            if waiting > 0 { endWaiting = true } else { finish() }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Idle, a read stays pending so that a server closing the kept connection is seen; in an exchange, the socket
        // is read on only while the reader has taken every part.
        if exchange == nil || waiting == 0 { context.read() }
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        EngineConnection.idle.remove(context.channel, endpoint)
        // An answer that ended before the connection closed (a server closing after its answer, as llama-server does
        // for `connection: close`) is whole, even while the reader still has parts of it to take.
        if !endWaiting {
            exchange?.connectionLost(EngineExchangeError.closedEarly)
            exchange = nil
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        exchange?.connectionLost(error)
        exchange = nil
        context.close(promise: nil)
    }

    /// The answer ended: the connection waits idle for the next request on this loop, or closes.
    private func finish() {
        endWaiting = false
        guard let exchange else { return }
        self.exchange = nil
        if keepAlive, let context, context.channel.isActive,
            EngineConnection.idle.put(context.channel, endpoint, limit: exchange.request.idleLimit)
        {
            let (channel, endpoint) = (context.channel, endpoint)
            idleTimer = channel.eventLoop.scheduleTask(in: exchange.request.idleTimeout) {
                EngineConnection.idle.remove(channel, endpoint)
                channel.close(promise: nil)
            }
            context.read()
        } else {
            context?.close(promise: nil)
        }
        exchange.end()
    }
}
