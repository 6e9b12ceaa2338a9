import HearthMesh
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

/// The link's flush coalescer: the flushes of one event-loop turn leave as one at the turn's end, nothing is held
/// past it, and a close never overtakes a held flush.
struct LinkFlushCoalescerTests {
    func channel() throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: LinkFlushCoalescer(), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, loop)
    }

    func read(_ channel: EmbeddedChannel) throws -> String? {
        try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) }
    }

    @Test func theFlushesOfOneTurnLeaveTogetherWhenTheTurnEnds() throws {
        let (channel, loop) = try channel()
        channel.writeAndFlush(ByteBuffer(string: "one"), promise: nil)
        channel.writeAndFlush(ByteBuffer(string: "two"), promise: nil)
        // Held until the loop has handled the turn's events.
        #expect(try read(channel) == nil)
        loop.run()
        #expect(try read(channel) == "one")
        #expect(try read(channel) == "two")
        #expect(try read(channel) == nil)

        // The next turn's flush is held and released again, not swallowed.
        channel.writeAndFlush(ByteBuffer(string: "three"), promise: nil)
        loop.run()
        #expect(try read(channel) == "three")
        _ = try channel.finish()
    }

    @Test func aWriteWithoutAFlushStaysUnflushed() throws {
        let (channel, loop) = try channel()
        channel.write(ByteBuffer(string: "unflushed"), promise: nil)
        loop.run()
        #expect(try read(channel) == nil)
        channel.flush()
        loop.run()
        #expect(try read(channel) == "unflushed")
        _ = try channel.finish()
    }

    /// On a real socket, as on a link: a close fails the writes it finds unflushed, so a held flush must go first.
    @Test func aCloseSendsTheHeldFlushFirst() async throws {
        let received = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: String.self)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Collector(received: received)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LinkFlushCoalescer()) }
            }
            .connect(to: server.localAddress!).get()
        // The write, its flush and the close in one turn of the client's loop, as a link's last frame and its close.
        let written = try await client.eventLoop.submit {
            let written = client.writeAndFlush(ByteBuffer(string: "last frame"))
            client.close(promise: nil)
            return written
        }.get()
        try await written.get()
        #expect(try await received.futureResult.get() == "last frame")
    }

    /// Everything a connection brought until its peer closed it.
    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let received: EventLoopPromise<String>
        var bytes = ByteBuffer()

        init(received: EventLoopPromise<String>) {
            self.received = received
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var chunk = unwrapInboundIn(data)
            bytes.writeBuffer(&chunk)
        }

        func channelInactive(context: ChannelHandlerContext) {
            received.succeed(String(buffer: bytes))
        }
    }
}
