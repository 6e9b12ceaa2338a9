import Foundation
import HearthCore
import HearthGateway
import HearthMesh
import HearthNode
import HearthTesting
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Part 3: raw byte streams through a node's link. A gateway and a stand-in node run in this process, joined over
/// the real mesh on loopback; the node exposes a `sink` (reads everything) and a `source` (writes N bytes) on
/// 127.0.0.1. A TCP client moves N MiB each way, once through `TunnelForward` and once straight to the services.
enum TunnelBench {
    static func run(megabytes: Int) async throws -> String {
        let bytes = megabytes << 20
        let sink = try await serve { SinkHandler() }
        let source = try await serve { SourceHandler(bytes: bytes) }
        defer {
            sink.close(promise: nil)
            source.close(promise: nil)
        }
        return try await withLinkedNode(services: ["sink": sink.localAddress!.port!, "source": source.localAddress!.port!]) { forward in
            try await measureThroughput(bytes: bytes, megabytes: megabytes, sink: sink, source: source, forward: forward)
        }
    }

    /// Runs `body` with a gateway and a stand-in node linked over the real mesh in this process, the node exposing
    /// `services`; `body` gets a function that opens a `TunnelForward` to one of them.
    static func withLinkedNode<T: Sendable>(
        services: [String: Int],
        _ body: (_ forward: (String) async throws -> TunnelForward) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "bench-tunnel")
        logger.logLevel = .warning
        let (ports, portSink) = AsyncStream.makeStream(of: Int.self)
        let gateway = try await buildGateway(
            configuration: GatewayConfiguration().with {
                $0.port = 0
                $0.meshHost = "127.0.0.1"
                $0.meshPort = 0
                $0.dataDirectory = try? TestEnvironment.temporaryDirectory("bench-tunnel")
            },
            logger: logger,
            onMeshListening: { portSink.yield($0) }
        )
        let gatewayGroup = ServiceGroup(configuration: .init(services: gateway.services, logger: logger))
        let gatewayTask = Task { try await gatewayGroup.run() }
        guard let meshPort = await ports.first(where: { _ in true }) else { throw BenchError("the mesh did not start") }
        let key = IdentityKey.generate()
        let link = buildLinkService(
            router: try FakeNode(tokens: 1, report: BenchServers.report(slots: 1)).router(),
            identity: NodeIdentity(key: key),
            configuration: NodeConfiguration().with {
                $0.join = JoinAddress(host: "127.0.0.1", port: meshPort, gatewayID: gateway.id)
                $0.tunnelServices = services
            },
            logger: logger
        )
        let nodeGroup = ServiceGroup(configuration: .init(services: [link], logger: logger))
        let nodeTask = Task { try await nodeGroup.run() }
        defer {
            Task {
                await nodeGroup.triggerGracefulShutdown()
                _ = await nodeTask.result
                await gatewayGroup.triggerGracefulShutdown()
                _ = await gatewayTask.result
            }
        }
        guard let links = gateway.links else { throw BenchError("no mesh") }
        for _ in 0..<200 where !links.isLinked(key.nodeID) { try await Task.sleep(for: .milliseconds(25)) }
        return try await body { service in try await TunnelForward(links: links, node: key.nodeID, service: service, logger: logger) }
    }

    /// Median round trips to services on a node, each through one link (client → gateway → node → service and back)
    /// and straight on loopback: a 64-byte echo; a decoded token's exchange between a pool's head and a member, back
    /// to back; and the same exchange once every `pace`, as a pool makes it (once per token), its threads idle between.
    struct RoundTrips {
        var link: Double
        var direct: Double
        var tokenLink: Double
        var tokenDirect: Double
        var pacedLink: Double
        var pacedDirect: Double
    }

    static func roundTrips(samples: Int, pace: Duration, pacedSamples: Int) async throws -> RoundTrips {
        let echo = try await serve { EchoHandler() }
        let member = try await serve { TokenAnswerHandler() }
        defer {
            echo.close(promise: nil)
            member.close(promise: nil)
        }
        let echoPort = echo.localAddress!.port!
        let memberPort = member.localAddress!.port!
        return try await withLinkedNode(services: ["echo": echoPort, "member": memberPort]) { forward in
            let echoTunnel = try await forward("echo")
            let memberTunnel = try await forward("member")
            defer {
                echoTunnel.close()
                memberTunnel.close()
            }
            return RoundTrips(
                link: try await pingPong(port: echoTunnel.port, samples: samples),
                direct: try await pingPong(port: echoPort, samples: samples),
                tokenLink: try await tokenExchanges(port: memberTunnel.port, samples: samples),
                tokenDirect: try await tokenExchanges(port: memberPort, samples: samples),
                pacedLink: try await tokenExchanges(port: memberTunnel.port, samples: pacedSamples, pace: pace),
                pacedDirect: try await tokenExchanges(port: memberPort, samples: pacedSamples, pace: pace)
            )
        }
    }

    /// What a `DelayProxy` of `delay` adds to one token exchange made once every `pace`, measured (median of
    /// `samples`, through the proxy, then straight): its delay both ways plus its own hop each way, which `tc netem`
    /// would not add (a loopback pass and a timer on an event loop that sleeps between chunks).
    static func delayedRoundTrip(delay: TimeAmount, pace: Duration, samples: Int) async throws -> Double {
        let member = try await serve { TokenAnswerHandler() }
        defer { member.close(promise: nil) }
        let port = member.localAddress!.port!
        let proxy = try await DelayProxy(to: port, delay: delay)
        defer { proxy.close() }
        let proxied = try await tokenExchanges(port: proxy.port, samples: samples, pace: pace)
        let direct = try await tokenExchanges(port: port, samples: samples, pace: pace)
        return proxied - direct
    }

    /// One decoded token's exchange between a pool's head and a member, as llama.cpp's RPC client (b11434) makes it
    /// for SmolLM2 split in two, read with `strace` on the head's engine: nine commands (seven `SET_TENSOR`, the graph
    /// compute, one `GET_TENSOR`), each written as three blocking sends (command byte, size, payload), 7,676 bytes; the
    /// member answers the last with 2,312 bytes in two sends.
    static let tokenSends = [2609, 2609, 309, 313, 313, 817, 309, 4, 312].flatMap { [1, 8, $0] }
    static let tokenAnswer = [8, 2304]

    /// Median time of `samples` token exchanges (`tokenSends`, then the whole answer read) to a `TokenAnswerHandler`
    /// on `port`, from a blocking socket with `TCP_NODELAY`, as the engine's RPC client; `pace` idle between them.
    static func tokenExchanges(port: Int, samples: Int, pace: Duration = .zero) async throws -> Double {
        // On a thread of its own: blocking calls would hold one of the cooperative pool's few threads.
        try await withCheckedThrowingContinuation { done in
            Thread { done.resume(with: Result { try blockingExchanges(port: port, samples: samples, pace: pace) }) }.start()
        }
    }

    private static func blockingExchanges(port: Int, samples: Int, pace: Duration) throws -> Double {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw BenchError("socket: \(errno)") }
        defer { close(socket) }
        var yes: Int32 = 1
        setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
        // A relay that stops answering fails the measurement instead of hanging it.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw BenchError("connect: \(errno)") }
        let payload = [UInt8](repeating: 0x42, count: tokenSends.max()!)
        var answer = [UInt8](repeating: 0, count: tokenAnswer.reduce(0, +))
        var times: [Double] = []
        for round in 0..<(samples + 50) {
            // Asleep, as the relay is while the member computes: on this kind of machine a thread woken after
            // milliseconds idle takes longer to run than one woken after microseconds.
            if pace > .zero { usleep(UInt32(pace / .microseconds(1))) }
            let start = ContinuousClock.now
            for size in tokenSends {
                guard send(socket, payload, size, 0) == size else { throw BenchError("send: \(errno)") }
            }
            var received = 0
            while received < answer.count {
                let count = answer.withUnsafeMutableBytes { recv(socket, $0.baseAddress! + received, $0.count - received, 0) }
                guard count > 0 else { throw BenchError("recv: \(errno)") }
                received += count
            }
            if round >= 50 { times.append(seconds(since: start)) }
        }
        return percentile(times, 50)
    }

    static func pingPong(port: Int, samples: Int) async throws -> Double {
        let message = ByteBuffer(repeating: 0x42, count: 64)
        return try await connect(port: port).executeThenClose { inbound, outbound in
            var iterator = inbound.makeAsyncIterator()
            var times: [Double] = []
            for round in 0..<(samples + 50) {
                let start = ContinuousClock.now
                try await outbound.write(message)
                var received = 0
                while received < 64, let chunk = try await iterator.next() { received += chunk.readableBytes }
                if round >= 50 { times.append(seconds(since: start)) }
            }
            outbound.finish()
            return percentile(times, 50)
        }
    }

    static func measureThroughput(
        bytes: Int,
        megabytes: Int,
        sink: any Channel,
        source: any Channel,
        forward: (String) async throws -> TunnelForward
    ) async throws -> String {
        let toSink = try await forward("sink")
        let fromSource = try await forward("source")
        defer {
            toSink.close()
            fromSource.close()
        }

        // Warm up, then measure each way, through the link and direct.
        _ = try await upload(port: toSink.port, bytes: 16 << 20)
        let rows: [(String, Measurement)] = [
            ("upload through the link", try await upload(port: toSink.port, bytes: bytes)),
            ("upload direct (loopback TCP)", try await upload(port: sink.localAddress!.port!, bytes: bytes)),
            ("download through the link", try await download(port: fromSource.port, bytes: bytes)),
            ("download direct (loopback TCP)", try await download(port: source.localAddress!.port!, bytes: bytes)),
        ]
        var text = """
            ## 3. Tunnel throughput: a raw byte stream through a node's link

            \(megabytes) MiB each way between a TCP client and a service on the node's loopback. Through the link the
            bytes go client → `TunnelForward` (gateway) → TLS 1.3 + HTTP/2 stream → node → service; "direct" connects
            the client to the service itself. Gateway, node, services and client share this process (and two cores), so
            CPU is the whole process's, per GiB moved.

            | path | MB/s | CPU seconds per GiB |
            | --- | --- | --- |

            """
        for (name, measurement) in rows {
            let rate = Double(bytes) / 1e6 / measurement.seconds
            let cpuPerGiB = measurement.cpu / (Double(bytes) / Double(1 << 30))
            text += "| \(name) | \(format(rate, 1)) | \(format(cpuPerGiB, 2)) |\n"
        }
        return text + "\n"
    }

    struct Measurement {
        var seconds: Double
        var cpu: Double
    }

    /// Writes `bytes` to `port`, half-closes, and waits for the far end to close (the sink closes once it has read
    /// everything).
    static func upload(port: Int, bytes: Int) async throws -> Measurement {
        let chunk = ByteBuffer(repeating: 0xA5, count: 256 << 10)
        return try await measure {
            try await connect(port: port).executeThenClose { inbound, outbound in
                var left = bytes
                while left > 0 {
                    try await outbound.write(chunk.getSlice(at: 0, length: min(left, chunk.readableBytes))!)
                    left -= min(left, chunk.readableBytes)
                }
                outbound.finish()
                for try await _ in inbound {}
            }
        }
    }

    /// Reads from `port` until the source closes; checks that every byte came.
    static func download(port: Int, bytes: Int) async throws -> Measurement {
        try await measure {
            let received = try await connect(port: port).executeThenClose { inbound, outbound in
                outbound.finish()
                var count = 0
                for try await chunk in inbound { count += chunk.readableBytes }
                return count
            }
            guard received == bytes else { throw BenchError("downloaded \(received) of \(bytes) bytes") }
        }
    }

    static func measure(_ body: () async throws -> Void) async throws -> Measurement {
        let cpuBefore = cpuSeconds(of: getpid())
        let start = ContinuousClock.now
        try await body()
        return Measurement(seconds: seconds(since: start), cpu: cpuSeconds(of: getpid()) - cpuBefore)
    }

    static func connect(port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
    }

    static func serve(_ handler: @escaping @Sendable () -> any ChannelHandler) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(handler()) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }
}

/// Writes back whatever it reads.
final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Stands in for a pool member's rpc-server: once a token's commands (`TunnelBench.tokenSends`) are in, writes the
/// answer in its sends.
final class TokenAnswerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let asked = TunnelBench.tokenSends.reduce(0, +)
    private var pending = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending += unwrapInboundIn(data).readableBytes
        while pending >= asked {
            pending -= asked
            for size in TunnelBench.tokenAnswer {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(repeating: 0x24, count: size)), promise: nil)
            }
        }
    }
}

/// Reads and drops everything; closes when the writer is done.
final class SinkHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event { context.close(promise: nil) }
    }
}

/// Writes `bytes` as fast as the connection takes them, then closes once they are out.
final class SourceHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let chunk = ByteBuffer(repeating: 0x5A, count: 256 << 10)
    private var left: Int

    init(bytes: Int) {
        left = bytes
    }

    func channelActive(context: ChannelHandlerContext) {
        pump(context: context)
        context.fireChannelActive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        pump(context: context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func pump(context: ChannelHandlerContext) {
        while left > 0 && context.channel.isWritable {
            let size = min(left, chunk.readableBytes)
            left -= size
            let slice = chunk.getSlice(at: 0, length: size)!
            if left == 0 {
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(slice)).whenComplete { _ in channel.close(promise: nil) }
            } else {
                context.writeAndFlush(wrapOutboundOut(slice), promise: nil)
            }
        }
    }
}
