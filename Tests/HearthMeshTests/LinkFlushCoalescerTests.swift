import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import HearthMesh

/// The link's flush coalescer: the flushes of one event-loop turn leave as one at the turn's end, a streamed token's
/// waits at most `streamDelay`, and a close never overtakes a held flush.
struct LinkFlushCoalescerTests {
    func channel(_ coalescer: LinkFlushCoalescer = LinkFlushCoalescer()) throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: coalescer, loop: loop)
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

    @Test func aStreamedTokenWaitsForTheDelayFromTheFirstTokenOrForAnotherWrite() throws {
        let coalescer = LinkFlushCoalescer()
        let (channel, loop) = try channel(coalescer)
        let half = TimeAmount.nanoseconds(LinkFlushCoalescer.streamDelay.nanoseconds / 2)
        coalescer.deferringFlushes { channel.writeAndFlush(ByteBuffer(string: "one"), promise: nil) }
        loop.run()
        #expect(try read(channel) == nil, "a token's flush left with its turn")
        loop.advanceTime(by: half)
        coalescer.deferringFlushes { channel.writeAndFlush(ByteBuffer(string: "two"), promise: nil) }
        loop.advanceTime(by: half)
        // The first token's delay, not the second's: a steady stream of tokens never holds the link's writes back.
        #expect(try read(channel) == "one")
        #expect(try read(channel) == "two")

        // Any other flush takes the waiting tokens with it at the end of its turn, and the delay is called off.
        coalescer.deferringFlushes { channel.writeAndFlush(ByteBuffer(string: "three"), promise: nil) }
        channel.writeAndFlush(ByteBuffer(string: "an answer's end"), promise: nil)
        loop.run()
        #expect(try read(channel) == "three")
        #expect(try read(channel) == "an answer's end")
        loop.advanceTime(by: LinkFlushCoalescer.streamDelay * 2)
        #expect(try read(channel) == nil)

        // After a flush for the turn is held, a token waits for nothing more.
        channel.writeAndFlush(ByteBuffer(string: "head"), promise: nil)
        coalescer.deferringFlushes { channel.writeAndFlush(ByteBuffer(string: "four"), promise: nil) }
        loop.run()
        #expect(try read(channel) == "head")
        #expect(try read(channel) == "four")
        _ = try channel.finish()
    }

    /// On a real socket, as on a link: a close fails the writes it finds unflushed, so a held flush must go first.
    @Test(arguments: [false, true]) func aCloseSendsTheHeldFlushFirst(streamed: Bool) async throws {
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
        // The write, its flush and the close in one turn of the client's loop, as a link's last frame and its close
        // (or a streamed token's, whose flush would wait).
        let written = try await client.eventLoop.submit {
            let coalescer = try client.pipeline.syncOperations.handler(type: LinkFlushCoalescer.self)
            let written =
                streamed
                ? coalescer.deferringFlushes { client.writeAndFlush(ByteBuffer(string: "last frame")) }
                : client.writeAndFlush(ByteBuffer(string: "last frame"))
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
