import Crypto
import Foundation
import HearthCore
import HearthGateway
import HearthMesh
import HearthNode
import HearthTesting
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Byte streams to a node's loopback services through its link.
@Suite(.serialized, .timeLimit(.minutes(2)))
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

    @Test func aServiceThatStopsReadingStopsTheWriterInsteadOfFillingMemory() async throws {
        let stalled = try await service(reads: false)
        defer { stalled.close(promise: nil) }
        let node = IdentityKey.generate()
        try await InProcessMesh.with(label: "tunnel-backpressure") { mesh in
            let router = try InProcessMesh.standInRouter(report: InProcessMesh.report(model: ModelID("tunnel:q8_0")!))
            mesh.join(key: node, router: router) { $0.tunnelServices = ["sink": stalled.localAddress!.port!] }
            _ = try await mesh.waitForNodes(1)
            let tunnel = try await #require(mesh.gateway.links).openTunnel(to: node.nodeID, service: "sink")
            let accepted = Atomic<Int>(0)
            let writer = Task {
                let chunk = ByteBuffer(repeating: 0x5a, count: 1 << 20)
                while !Task.isCancelled {
                    try await tunnel.write(chunk)
                    accepted.add(chunk.readableBytes, ordering: .relaxed)
                }
            }
            // Let the writer run into the stalled service; what it got rid of is bounded by the windows and buffers.
            var last = -1
            for _ in 0..<40 {
                try await Task.sleep(for: .milliseconds(100))
                let now = accepted.load(ordering: .relaxed)
                if now == last { break }
                last = now
            }
            let total = accepted.load(ordering: .relaxed)
            #expect(total < 64 << 20, "the writer pushed \(total >> 20) MiB into a service that reads nothing")
            writer.cancel()
            tunnel.close()
        }
    }
}
