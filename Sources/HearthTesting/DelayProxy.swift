package import NIOCore
import NIOPosix
import Synchronization

/// A stand-in for `tc netem delay`, which this machine's kernel lacks (no `sch_netem`): a loopback TCP proxy that
/// holds every chunk for `delay` before passing it on, in each direction, in order. Nodes that join through it have
/// links `2 × delay` longer per round trip. It adds no loss, jitter or bandwidth limit, and its own hop costs about
/// one loopback round trip. `cut()` closes the connections it carries, as a dropped network path would.
package final class DelayProxy: Sendable {
    private let server: any Channel
    private let delay: Delay
    /// The connections accepted and still open.
    private let open = Connections()
    package var port: Int { server.localAddress!.port! }

    package init(to target: Int, delay: TimeAmount) async throws {
        let delay = Delay(delay)
        self.delay = delay
        let open = self.open
        server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { inbound in
                open.add(inbound)
                // The accepted connection reads nothing until this completes: it is registered afterwards.
                return ClientBootstrap(group: inbound.eventLoop)
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

    /// Changes the delay of every chunk read from now on, on connections open and to come. Order is kept: a chunk
    /// never passes one read before it, even when the delay shrinks.
    package func setDelay(_ delay: TimeAmount) {
        self.delay.nanoseconds.store(delay.nanoseconds, ordering: .relaxed)
    }

    package func close() {
        server.close(promise: nil)
    }

    /// Closes every connection open now (each end sees its peer go, what was in flight is lost); new ones are still
    /// accepted, so a node that dials again gets through.
    package func cut() {
        for channel in open.channels.withLock({ Array($0.values) }) { channel.close(promise: nil) }
    }

    /// Open connections by channel, each removed when it closes.
    private final class Connections: Sendable {
        let channels = Mutex<[ObjectIdentifier: any Channel]>([:])

        func add(_ channel: any Channel) {
            let key = ObjectIdentifier(channel)
            channels.withLock { $0[key] = channel }
            channel.closeFuture.whenComplete { _ in _ = self.channels.withLock { $0.removeValue(forKey: key) } }
        }
    }

    /// The delay, shared by the proxy and its connections' handlers.
    private final class Delay: Sendable {
        let nanoseconds: Atomic<Int64>
        init(_ delay: TimeAmount) { nanoseconds = Atomic(delay.nanoseconds) }
    }

    /// Passes what its channel reads to `peer` after the delay; closes `peer` (after what is in flight) when its own
    /// channel closes. Both channels share an event loop, so scheduled writes keep their order.
    private final class Delayer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let peer: any Channel
        let delay: Delay
        /// When the last chunk read goes out: none goes out before it.
        private var lastDeparture = NIODeadline.uptimeNanoseconds(0)

        init(to peer: any Channel, delay: Delay) {
            self.peer = peer
            self.delay = delay
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            let peer = self.peer
            context.eventLoop.scheduleTask(deadline: departure()) { peer.writeAndFlush(bytes, promise: nil) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            let peer = self.peer
            context.eventLoop.scheduleTask(deadline: departure()) { peer.close(promise: nil) }
            context.fireChannelInactive()
        }

        private func departure() -> NIODeadline {
            lastDeparture = max(lastDeparture, .now() + .nanoseconds(delay.nanoseconds.load(ordering: .relaxed)))
            return lastDeparture
        }
    }
}
