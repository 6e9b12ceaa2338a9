import Crypto
import Foundation
import HearthTesting
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthMesh
@testable import HearthNode

// The limit only catches a hang: early in a full run beside stress-ng the test process has been seen to wait over
// 100 s for its cooperative threads.
/// Byte streams to a node's loopback services through its link.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct TunnelTests {
    /// Echoes what it reads; with `reads: false` it accepts and never reads.
    final class EchoHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            // Close only once every echoed byte is out.
            if case ChannelEvent.inputClosed = event {
                let channel = context.channel
                context.writeAndFlush(NIOAny(ByteBuffer())).whenComplete { _ in channel.close(promise: nil) }
            }
        }
    }

    func service(reads: Bool) async throws -> any Channel {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.autoRead, value: reads)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(EchoHandler()) }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    @Test func aTunnelCarriesBytesBothWaysToAListedServiceOnly() async throws {
        let echo = try await service(reads: true)
        defer { echo.close(promise: nil) }
        let node = IdentityKey.generate()
        try await InProcessMesh.with(label: "tunnel") { mesh in
            let router = try InProcessMesh.standInRouter(report: InProcessMesh.report(model: ModelID("tunnel:q8_0")!))
            mesh.join(key: node, router: router) {
                $0.tunnelServices = ["echo": echo.localAddress!.port!, "closed": 1]
            }
            _ = try await mesh.waitForNodes(1)
            let links = try #require(mesh.gateway.links)

            // 16 MiB of varied bytes through a local port, read back while still writing.
            let forward = try await TunnelForward(links: links, node: node.nodeID, service: "echo", logger: Logger(label: "tunnel"))
            defer { forward.close() }
            var payload = ByteBuffer()
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<(Int(ProcessInfo.processInfo.environment["TUNNEL_BYTES"] ?? "") ?? 16 << 20) / 8 {
                payload.writeInteger(generator.next() as UInt64)
            }
            let sent = Data(SHA256.hash(data: payload.readableBytesView))
            let toSend = payload
            let received = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                .connect(host: "127.0.0.1", port: forward.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                    }
                }
                .executeThenClose { inbound, outbound in
                    try await withThrowingTaskGroup { group in
                        group.addTask {
                            var rest = toSend
                            while rest.readableBytes > 0, let chunk = rest.readSlice(length: min(rest.readableBytes, 256 << 10)) {
                                try await outbound.write(chunk)
                            }
                            outbound.finish()
                        }
                        var hasher = SHA256()
                        var count = 0
                        for try await chunk in inbound {
                            hasher.update(data: chunk.readableBytesView)
                            count += chunk.readableBytes
                        }
                        try await group.waitForAll()
                        return (count, Data(hasher.finalize()))
                    }
                }
            #expect(received.0 == payload.readableBytes)
            #expect(received.1 == sent)

            // Nothing but the listed services: not an unlisted name, not a path, not a listed port with no server.
            for name in ["engine", "..%2Fhealth", "echo2"] {
                await #expect(throws: LinkTunnelError.self) { _ = try await links.openTunnel(to: node.nodeID, service: name) }
            }
            do {
                _ = try await links.openTunnel(to: node.nodeID, service: "closed")
                Issue.record("a tunnel to a port with no server opened")
            } catch let LinkTunnelError.refused(status, _) {
                #expect(status == 502)
            }
            await #expect(throws: NodeTransportError.self) { _ = try await links.openTunnel(to: NodeID.random(), service: "echo") }
        }
    }

    /// Writes 64 KiB chunks whenever its channel is writable; counts what the kernel took (completed writes).
    final class Pusher: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let taken = Atomic<Int>(0)

        func channelActive(context: ChannelHandlerContext) { push(context) }
        func channelWritabilityChanged(context: ChannelHandlerContext) { push(context) }

        private func push(_ context: ChannelHandlerContext) {
            let chunk = ByteBuffer(repeating: 0x5a, count: 64 << 10)
            while context.channel.isWritable {
                context.writeAndFlush(wrapOutboundOut(chunk)).whenSuccess { self.taken.add(chunk.readableBytes, ordering: .relaxed) }
            }
        }
    }

    /// Writes to `port` until the kernel takes no more; how much it took, or `nil` if it never stopped within 20 s.
    func pushUntilStalled(port: Int) async throws -> Int? {
        let pusher = Pusher()
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { $0.pipeline.addHandler(pusher) }
            .connect(host: "127.0.0.1", port: port)
            .get()
        defer { client.close(promise: nil) }
        // Polled, bounded: the count must stand still for half a second.
        var last = -1
        for _ in 0..<40 {
            try await Task.sleep(for: .milliseconds(500))
            let now = pusher.taken.load(ordering: .relaxed)
            if now == last { return now }
            last = now
        }
        return nil
    }

    @Test func aServiceThatStopsReadingStopsTheWriterInsteadOfFillingMemory() async throws {
        // The kernel's own buffers take a lot on loopback (receive buffers grow to tcp_rmem's maximum): measured
        // straight to a service that reads nothing, they are the yardstick.
        let direct = try await service(reads: false)
        defer { direct.close(promise: nil) }
        let kernel = try #require(try await pushUntilStalled(port: direct.localAddress!.port!), "a plain TCP writer never stalled")
        let stalled = try await service(reads: false)
        defer { stalled.close(promise: nil) }
        let node = IdentityKey.generate()
        try await InProcessMesh.with(label: "tunnel-backpressure") { mesh in
            let router = try InProcessMesh.standInRouter(report: InProcessMesh.report(model: ModelID("tunnel:q8_0")!))
            mesh.join(key: node, router: router) { $0.tunnelServices = ["sink": stalled.localAddress!.port!] }
            _ = try await mesh.waitForNodes(1)
            let forward = try await TunnelForward(
                links: try #require(mesh.gateway.links),
                node: node.nodeID,
                service: "sink",
                logger: Logger(label: "tunnel")
            )
            defer { forward.close() }
            // Through the tunnel there are twice the sockets, plus the stream's window and the splices' buffers;
            // a splice that read on regardless would push until the time ran out.
            let total = try #require(try await pushUntilStalled(port: forward.port), "the writer never stalled: the tunnel fills memory")
            #expect(total > 0, "nothing crossed the tunnel")
            #expect(total < 2 * kernel + (16 << 20), "the writer pushed \(total >> 20) MiB (the kernel alone takes \(kernel >> 20) MiB)")
        }
    }
}
