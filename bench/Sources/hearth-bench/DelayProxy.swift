import NIOCore
import NIOPosix

/// A stand-in for `tc netem delay`, which this machine's kernel lacks (no `sch_netem`): a loopback TCP proxy that
/// holds every chunk for `delay` before passing it on, in each direction, in order. Nodes that join through it have
/// links `2 × delay` longer per round trip. It adds no loss, jitter or bandwidth limit, and its own hop costs about
/// one loopback round trip.
final class DelayProxy: Sendable {
    private let server: any Channel
    var port: Int { server.localAddress!.port! }

    init(to target: Int, delay: TimeAmount) async throws {
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { inbound in
                // The accepted connection reads nothing until this completes: it is registered afterwards.
                ClientBootstrap(group: inbound.eventLoop)
                    .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { outbound in
                        inbound.eventLoop.makeCompletedFuture {
                            try inbound.pipeline.syncOperations.addHandler(Delayer(to: outbound, delay: delay))
                            try outbound.pipeline.syncOperations.addHandler(Delayer(to: inbound, delay: delay))
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
    }

    func close() {
        server.close(promise: nil)
    }

    /// Passes what its channel reads to `peer` after `delay`; closes `peer` (after what is in flight) when its own
    /// channel closes. Both channels share an event loop, so scheduled writes keep their order.
    private final class Delayer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let delay: TimeAmount

        init(to peer: any Channel, delay: TimeAmount) {
            self.peer = peer
            self.delay = delay
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            let peer = self.peer
            context.eventLoop.scheduleTask(in: delay) { peer.writeAndFlush(bytes, promise: nil) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            let peer = self.peer
            context.eventLoop.scheduleTask(in: delay) { peer.close(promise: nil) }
            context.fireChannelInactive()
        }
    }
}
