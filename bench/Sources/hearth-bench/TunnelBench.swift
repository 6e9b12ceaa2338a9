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

    /// Median round trip of a 64-byte message to an echo service on a node: through one link (client → gateway →
    /// node → service and back) and straight on loopback.
    static func roundTrips(samples: Int) async throws -> (link: Double, direct: Double) {
        let echo = try await serve { EchoHandler() }
        defer { echo.close(promise: nil) }
        let port = echo.localAddress!.port!
        return try await withLinkedNode(services: ["echo": port]) { forward in
            let tunnel = try await forward("echo")
            defer { tunnel.close() }
            return (try await pingPong(port: tunnel.port, samples: samples), try await pingPong(port: port, samples: samples))
        }
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
