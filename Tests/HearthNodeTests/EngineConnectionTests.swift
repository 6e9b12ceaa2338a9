import HearthTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import HearthNode

/// The node's HTTP/1.1 client for its engines' completions (`EngineConnection`): where it connects, which connections
/// it keeps, and how an exchange fails.
///
/// FAKE engine: a loopback NIO server of the test's own that counts its connections and answers each request with a
/// fixed body, or not at all; a real llama-server cannot be made to hold an answer or to close a connection at will.
@Suite(.timeLimit(.minutes(2)))
struct EngineConnectionTests {
    @Test func endpointsAreReadFromTheOwnersURL() {
        let plain = EngineEndpoint(root: "http://192.168.1.20:11434")
        #expect(plain?.host == "192.168.1.20" && plain?.port == 11434 && plain?.tls == false && plain?.pathPrefix == "")
        #expect(plain?.hostHeader == "192.168.1.20:11434")
        let secure = EngineEndpoint(root: "https://llm.example.org/ollama")
        #expect(secure?.host == "llm.example.org" && secure?.port == 443 && secure?.tls == true && secure?.pathPrefix == "/ollama")
        #expect(secure?.hostHeader == "llm.example.org")
        let six = EngineEndpoint(root: "http://[::1]:8080")
        #expect(six?.host == "::1" && six?.port == 8080 && six?.hostHeader == "[::1]:8080")
        #expect(EngineEndpoint(root: "http://localhost")?.port == 80)
        for bad in ["ftp://host:21", "http://", "http://:80", "http://host:0", "http://host:70000", "http://host:x", "http://[::1", "http://[::1]x"] {
            #expect(EngineEndpoint(root: bad) == nil, "\(bad)")
        }
    }

    @Test func aKeptConnectionCarriesTheNextRequestAndAClosingOneDoesNot() async throws {
        try await FakeEngine.with(.answers("{\"ok\":true}")) { engine in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            for _ in 0..<3 {
                let answer = try await Reader.exchange(engine.request(keep: true), on: loop)
                #expect(answer.status == .ok && answer.body == "{\"ok\":true}")
            }
            #expect(engine.connections == 1, "kept requests opened \(engine.connections) connections")
            for _ in 0..<2 { _ = try await Reader.exchange(engine.request(keep: false), on: loop) }
            // The kept one carries the first `close` request, and is closed after it; the second needs a new one.
            #expect(engine.connections == 2)
            _ = try await eventually("the closing requests' connections to close") { engine.open == 0 ? true : nil }
        }
    }

    /// Connections wait idle on the loop they were made on, but no more than the request's limit to one engine on all
    /// loops together: a managed llama-server gives each open connection a thread of a pool sized for its slots
    /// twice, so idle ones past the slots would leave a new request waiting for a thread.
    @Test(arguments: [1, Int.max]) func idleConnectionsStayWithinTheirLimitOverAllLoops(limit: Int) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { group.shutdownGracefully { _ in } }
        let loops = Array(group.makeIterator())
        try await FakeEngine.with(.answers("{}")) { engine in
            var request = engine.request(keep: true)
            request.idleLimit = limit
            _ = try await Reader.exchange(request, on: loops[0])
            _ = try await Reader.exchange(request, on: loops[1])
            // The second loop has none of its own to take: a second connection, kept only within the limit.
            #expect(engine.connections == 2)
            _ = try await eventually("the connection past the limit to close") { engine.open == min(limit, 2) ? true : nil }
            #expect(EngineConnection.idle.count(EngineEndpoint(loopbackPort: engine.port)) == min(limit, 2))
            // The first loop's is kept and carries its next request.
            _ = try await Reader.exchange(request, on: loops[0])
            #expect(engine.connections == 2)
        }
    }

    /// An owner's server named by its host name is resolved (an address is connected to without a lookup).
    @Test func aServerNamedByItsHostNameIsReached() async throws {
        try await FakeEngine.with(.answers("{}")) { engine in
            var request = engine.request(keep: false)
            request.endpoint = try #require(EngineEndpoint(root: "http://localhost:\(engine.port)"))
            let answer = try await Reader.exchange(request, on: MultiThreadedEventLoopGroup.singleton.next())
            #expect(answer.status == .ok && engine.requests == 1)
        }
    }

    /// A kept connection goes after a second idle, before a server would close it under a request going out.
    @Test func anIdleConnectionIsClosedAfterASecond() async throws {
        try await FakeEngine.with(.answers("{}")) { engine in
            var request = engine.request(keep: true)
            request.idleTimeout = EngineConnection.idleTimeout
            _ = try await Reader.exchange(request, on: MultiThreadedEventLoopGroup.singleton.next())
            #expect(engine.connections == 1)
            _ = try await eventually("the idle connection to close", within: .seconds(30)) { engine.open == 0 ? true : nil }
        }
    }

    @Test func aServerThatClosesAfterItsAnswerIsNotKept() async throws {
        try await FakeEngine.with(.answersAndCloses("{}")) { engine in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            for _ in 0..<2 {
                let answer = try await Reader.exchange(engine.request(keep: true), on: loop)
                #expect(answer.status == .ok)
            }
            #expect(engine.connections == 2)
        }
    }

    /// A server that closed a kept connection just as the next request went out on it (its idle timeout, or a restart)
    /// dropped the request unread: it is sent again, once, on a new connection, and the client never hears of it.
    @Test func aRequestOnAKeptConnectionTheServerClosedGoesOutAgainOnANewOne() async throws {
        try await FakeEngine.with(.dropsKeptConnectionsNextRequest("{\"n\":1}")) { engine in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            for round in 1...2 {
                let answer = try await Reader.exchange(engine.request(keep: true), on: loop)
                #expect(answer.status == .ok && answer.body == "{\"n\":1}", "round \(round)")
            }
            // The first request opened a connection; the second went out on it, was dropped, and went out again on a new one.
            #expect(engine.connections == 2 && engine.requests == 3)
        }
    }

    /// A new connection closed unanswered is the engine failing, not a kept connection gone stale: no second try.
    @Test func aNewConnectionClosedUnansweredFailsTheRequest() async throws {
        try await FakeEngine.with(.closesUnanswered) { engine in
            await #expect(throws: EngineExchangeError.closedEarly) {
                try await Reader.exchange(engine.request(keep: true), on: MultiThreadedEventLoopGroup.singleton.next())
            }
            #expect(engine.connections == 1 && engine.requests == 1)
        }
    }

    /// An answer the engine began and broke off is the engine's failure, on a kept connection too: sent again, it would
    /// be generated twice.
    @Test func anAnswerBrokenOffOnAKeptConnectionIsNotAskedAgain() async throws {
        try await FakeEngine.with(.breaksKeptConnectionsNextAnswer("{\"n\":1}")) { engine in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            _ = try await Reader.exchange(engine.request(keep: true), on: loop)
            // The answer's body is shorter than its length: the decoder's error, not a second try.
            await #expect(throws: (any Error).self) { try await Reader.exchange(engine.request(keep: true), on: loop) }
            #expect(engine.connections == 1 && engine.requests == 2)
        }
    }

    /// The server closes its connection after its answer while the reader has not yet taken the answer's parts (a
    /// relay whose gateway has yet to take the response head): the answer is whole all the same.
    @Test func anAnswerEndedBeforeTheServerClosedIsWholeWhileTheReaderCatchesUp() async throws {
        try await FakeEngine.with(.answersAndCloses("{\"whole\":true}")) { engine in
            let loop = MultiThreadedEventLoopGroup.singleton.next()
            let held = loop.makePromise(of: Void.self)
            let reader = Reader()
            reader.taken = { held.futureResult }
            _ = EngineConnection.send(engine.request(keep: false), on: loop, to: reader)
            _ = try await eventually("the server to answer and close") { engine.requests == 1 && engine.open == 0 ? true : nil }
            held.succeed()
            let answer = try await reader.answer()
            #expect(answer.status == .ok && answer.body == "{\"whole\":true}")
        }
    }

    /// Nothing listens: the exchange fails at once, with an error the node recognises as a refusal (it then has its
    /// monitor look at the owner's server).
    @Test func aRefusedConnectionFailsAtOnce() async throws {
        let port = try TestEnvironment.freePort()
        let request = EngineRequest(
            endpoint: EngineEndpoint(loopbackPort: port),
            path: "/v1/chat/completions",
            headers: [:],
            body: ByteBuffer(string: "{}"),
            deadline: .now() + .seconds(300)
        )
        let error = await #expect(throws: (any Error).self) { try await Reader.exchange(request, on: MultiThreadedEventLoopGroup.singleton.next()) }
        #expect(error.map(BackendMonitorService.refusesConnections) == true, "\(String(describing: error))")
    }

    /// An engine that never answers fails its exchange at the deadline, and its connection is closed.
    @Test func anUnansweredRequestFailsAtItsDeadline() async throws {
        try await FakeEngine.with(.holds) { engine in
            var request = engine.request(keep: true)
            request.deadline = .now() + .milliseconds(300)
            await #expect(throws: EngineExchangeError.deadlineExceeded) {
                try await Reader.exchange(request, on: MultiThreadedEventLoopGroup.singleton.next())
            }
            _ = try await eventually("the engine's connection to close") { engine.open == 0 ? true : nil }
        }
    }

    /// A reader keeps its exchange (to cancel it), so the exchange must let go of the reader once it has told it how it
    /// ended, or every request's relay would stay in memory.
    @Test func anEndedExchangeLetsGoOfItsReader() async throws {
        final class Watch: @unchecked Sendable { weak var reader: Reader? }
        let watch = Watch()
        try await FakeEngine.with(.answers("{}")) { engine in
            for keep in [true, false] {
                do {
                    let reader = Reader()
                    watch.reader = reader
                    reader.exchange = EngineConnection.send(engine.request(keep: keep), on: MultiThreadedEventLoopGroup.singleton.next(), to: reader)
                    _ = try await reader.answer()
                }
                _ = try await eventually("the ended exchange to let go of its reader") { watch.reader == nil ? true : nil }
            }
        }
    }

    @Test func aCancelledExchangeClosesItsConnection() async throws {
        try await FakeEngine.with(.holds) { engine in
            let reader = Reader()
            let exchange = EngineConnection.send(engine.request(keep: true), on: MultiThreadedEventLoopGroup.singleton.next(), to: reader)
            _ = try await eventually("the request to reach the engine") { engine.requests == 1 ? true : nil }
            exchange.cancel()
            await #expect(throws: EngineExchangeError.cancelled) { try await reader.answer() }
            _ = try await eventually("the engine's connection to close") { engine.open == 0 ? true : nil }
        }
    }
}

/// Collects an exchange's answer.
private final class Reader: EngineResponseReader, @unchecked Sendable {
    /// Kept, as `EngineRelay` keeps its exchange to cancel it.
    var exchange: EngineExchange?
    struct Answer {
        var status: HTTPResponseStatus
        var body: String
    }

    /// Completes each body part's future; by default at once (a relay whose link takes more).
    var taken: @Sendable () -> EventLoopFuture<Void> = { MultiThreadedEventLoopGroup.singleton.any().makeSucceededVoidFuture() }
    private let state = Mutex<(head: HTTPResponseHead?, body: ByteBuffer)>((nil, ByteBuffer()))
    private let ended = AsyncThrowingStream<Void, any Error>.makeStream()

    static func exchange(_ request: EngineRequest, on loop: any EventLoop) async throws -> Answer {
        let reader = Reader()
        _ = EngineConnection.send(request, on: loop, to: reader)
        return try await reader.answer()
    }

    func answer() async throws -> Answer {
        for try await _ in ended.stream { break }
        return try state.withLock { state in
            guard let head = state.head else { throw EngineExchangeError.closedEarly }
            return Answer(status: head.status, body: String(buffer: state.body))
        }
    }

    func engineHead(_ head: HTTPResponseHead) { state.withLock { $0.head = head } }

    func engineBody(_ part: ByteBuffer) -> EventLoopFuture<Void>? {
        var part = part
        state.withLock { _ = $0.body.writeBuffer(&part) }
        return taken()
    }

    func engineEnd() {
        ended.continuation.yield()
        ended.continuation.finish()
    }

    func engineFailed(_ error: any Error) { ended.continuation.finish(throwing: error) }
}

/// FAKE engine: a loopback HTTP/1.1 server that counts its connections and answers as it is told.
private final class FakeEngine: Sendable {
    enum Behaviour: Sendable {
        case answers(String)
        /// Answers with `connection: close`, then closes.
        case answersAndCloses(String)
        /// Reads the request and never answers.
        case holds
        /// Answers a connection's first request; closes it, unanswered, under the next.
        case dropsKeptConnectionsNextRequest(String)
        /// Answers a connection's first request; sends the next one's head and part of its body, then closes.
        case breaksKeptConnectionsNextAnswer(String)
        /// Closes every connection under its first request, unanswered.
        case closesUnanswered
    }

    let behaviour: Behaviour
    private let counts = Mutex<(connections: Int, open: Int, requests: Int)>((0, 0, 0))
    private(set) nonisolated(unsafe) var port = 0

    var connections: Int { counts.withLock { $0.connections } }
    var open: Int { counts.withLock { $0.open } }
    var requests: Int { counts.withLock { $0.requests } }

    init(_ behaviour: Behaviour) { self.behaviour = behaviour }

    /// A request whose kept connection waits a minute for the next one: on a machine busy enough to leave a second
    /// between two of a test's requests, the node's second would have closed it, and the test counted three
    /// connections where two were asked for.
    func request(keep: Bool) -> EngineRequest {
        var headers: HTTPHeaders = ["content-type": "application/json"]
        if !keep { headers.add(name: "connection", value: "close") }
        var request = EngineRequest(
            endpoint: EngineEndpoint(loopbackPort: port),
            path: "/v1/chat/completions",
            headers: headers,
            body: ByteBuffer(string: "{}"),
            deadline: .now() + .seconds(60)
        )
        request.idleTimeout = .seconds(60)
        return request
    }

    static func with(_ behaviour: Behaviour, _ body: (FakeEngine) async throws -> Void) async throws {
        let engine = FakeEngine(behaviour)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                engine.counts.withLock {
                    $0.connections += 1
                    $0.open += 1
                }
                channel.closeFuture.whenComplete { _ in engine.counts.withLock { $0.open -= 1 } }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(engine: engine))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        engine.port = server.localAddress?.port ?? 0
        do {
            try await body(engine)
        } catch {
            try? await server.close()
            try? await group.shutdownGracefully()
            throw error
        }
        try await server.close()
        try await group.shutdownGracefully()
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let engine: FakeEngine
        /// Requests read on this connection.
        private var served = 0
        init(engine: FakeEngine) { self.engine = engine }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            engine.counts.withLock { $0.requests += 1 }
            served += 1
            let (text, closes): (String, Bool)
            switch engine.behaviour {
            case .answers(let answer): (text, closes) = (answer, false)
            case .answersAndCloses(let answer): (text, closes) = (answer, true)
            case .holds: return
            case .closesUnanswered: return context.close(promise: nil)
            case .dropsKeptConnectionsNextRequest(let answer):
                guard served == 1 else { return context.close(promise: nil) }
                (text, closes) = (answer, false)
            case .breaksKeptConnectionsNextAnswer(let answer):
                (text, closes) = (answer, false)
                if served > 1 {
                    var head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-type": "application/json"])
                    head.headers.add(name: "content-length", value: String(text.utf8.count))
                    context.write(wrapOutboundOut(.head(head)), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: String(text.prefix(2)))))), promise: nil)
                    return context.close(promise: nil)
                }
            }
            var head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-type": "application/json"])
            head.headers.add(name: "content-length", value: String(text.utf8.count))
            if closes { head.headers.add(name: "connection", value: "close") }
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            if closes { context.close(promise: nil) }
        }
    }
}
