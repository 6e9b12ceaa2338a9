import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import HearthMesh

/// Two real loopback TCP connections joined by `Splice`: bytes both ways, sent before the join too, each side's end
/// passed on as a half-close, and a close on one side closing the other.
@Suite(.timeLimit(.minutes(1)))
struct SpliceTests {
    typealias Connection = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// A listener whose connections come out as `SplicedConnection`s. Small kernel buffers toward the client, so what
    /// the client has not read waits in the splice's channel rather than in the kernel.
    static func listener() async throws -> NIOAsyncChannel<SplicedConnection, Never> {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .childChannelOption(ChannelOptions.socketOption(.so_sndbuf), value: 16 << 10)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture { try SplicedConnection.prepare(channel) }
            }
    }

    /// A listener whose connections come out as plain async channels (the service behind the splice).
    static func service() async throws -> NIOAsyncChannel<Connection, Never> {
        try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Connection(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
    }

    static func client(port: Int) async throws -> Connection {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: 16 << 10)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try Connection(wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
    }

    /// A client connected through a splice to the service; `beforeJoin` runs with the client before the two
    /// connections are joined.
    static func spliced(
        beforeJoin: (Connection) async throws -> Void = { _ in }
    ) async throws -> (client: Connection, service: Connection, front: SplicedConnection) {
        let front = try await listener()
        let back = try await service()
        defer {
            front.channel.close(promise: nil)
            back.channel.close(promise: nil)
        }
        let client = try await client(port: front.channel.localAddress!.port!)
        var served: Connection?
        do {
            let accepted = try #require(try await front.executeThenClose { try await $0.first { _ in true } })
            // The connect timeout only catches a hang: a starved test process once missed the default 3 s.
            let toService = try await SplicedConnection.connect(port: back.channel.localAddress!.port!, timeout: .seconds(30))
            served = try await back.executeThenClose { try await $0.first { _ in true } }
            try await beforeJoin(client)
            Splice.join(accepted.peer, toService.peer)
            return (client, try #require(served), accepted)
        } catch {
            // Closed through `executeThenClose`, which finishes their writers: NIO's debug build traps a writer freed
            // unfinished, and that took the whole test process down instead of failing this test with `error`.
            try? await client.executeThenClose { _, _ in }
            try? await served?.executeThenClose { _, _ in }
            throw error
        }
    }

    @Test func bytesCrossBothWaysAndEachEndIsPassedOn() async throws {
        let (client, service, _) = try await Self.spliced { client in
            // Sent before the join: held, then delivered first.
            try await client.channel.writeAndFlush(ByteBuffer(string: "early "))
        }
        let payload = ByteBuffer(repeating: 0x61, count: 3 << 20)
        async let heard: String = service.executeThenClose { inbound, outbound in
            var all = ByteBuffer()
            for try await var chunk in inbound { all.writeBuffer(&chunk) }
            // The client's half-close arrived as the end of the service's input; answer, then end our side.
            try await outbound.write(ByteBuffer(string: "got \(all.readableBytes)"))
            outbound.finish()
            return String(buffer: all.getSlice(at: 0, length: 6)!)
        }
        let reply: String = try await client.executeThenClose { inbound, outbound in
            try await outbound.write(payload)
            outbound.finish()
            var all = ByteBuffer()
            for try await var chunk in inbound { all.writeBuffer(&chunk) }
            return String(buffer: all)
        }
        #expect(try await heard == "early ")
        #expect(reply == "got \(6 + (3 << 20))")
    }

    /// After our half-close the service answers and closes its socket outright. NIO then reads to the EOF and closes
    /// without an `inputClosed`; that close must still be passed on as an end, so what the client has not read yet
    /// (held in the front connection's buffers, since the client reads only once the service is gone) still reaches it.
    @Test func aServiceThatAnswersAndClosesLosesNothing() async throws {
        let (client, service, _) = try await Self.spliced()
        let reply = 2 << 20
        let (closed, closedSink) = AsyncStream.makeStream(of: Void.self)
        let answering = Task {
            try await service.executeThenClose { inbound, outbound in
                for try await _ in inbound {}
                var left = reply
                while left > 0 {
                    let chunk = min(left, 64 << 10)
                    try await outbound.write(ByteBuffer(repeating: 0x62, count: chunk))
                    left -= chunk
                }
            }
            closedSink.yield()
            closedSink.finish()
        }
        let received: Int = try await client.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "question"))
            outbound.finish()
            for await _ in closed {}
            var count = 0
            for try await chunk in inbound { count += chunk.readableBytes }
            return count
        }
        try await answering.value
        #expect(received == reply)
    }

    /// A reset (not an end: an end is passed on as a half-close, as above) closes the other side too.
    @Test func aResetOnOneSideClosesTheOther() async throws {
        let (client, service, front) = try await Self.spliced()
        // SO_LINGER 0: the close sends a reset.
        let options = try #require(service.channel as? any SocketOptionProvider)
        try await options.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        // Closed through `executeThenClose`, which also finishes its writer (NIO's debug build traps a writer freed
        // unfinished, which took the whole test process down once).
        try await service.executeThenClose { _, _ in }
        // Polled, bounded: the front connection closes, without the client having sent or ended anything. The bound
        // is generous: early in a full run beside stress-ng, 10 s once passed before the reset was seen.
        let deadline = ContinuousClock.now + .seconds(40)
        while front.channel.isActive, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!front.channel.isActive, "the splice kept the client's side open after the service reset")
        let ended: Bool = try await client.executeThenClose { inbound, _ in
            do {
                for try await _ in inbound {}
            } catch {}
            return true
        }
        #expect(ended)
    }
}
