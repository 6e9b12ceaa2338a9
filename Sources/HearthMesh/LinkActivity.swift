package import NIOCore
import Synchronization

/// When a link last brought in bytes: the first handler of a link's pipeline notes every read. A link that carries
/// traffic is alive, however late one answer on it comes: on machines whose cores thousands of streams saturate, the
/// report poll comes back late, and closing that link as dead cut every stream on it (seen at 5,000 held streams).
package final class LinkActivity: ChannelInboundHandler, Sendable {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer

    private let lastRead = Atomic<UInt64>(NIODeadline.now().uptimeNanoseconds)

    package init() {}

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
        context.fireChannelRead(data)
    }

    /// Whether the link brought in bytes within the last `interval`.
    package func heard(within interval: Duration) -> Bool {
        let last = lastRead.load(ordering: .relaxed)
        let now = NIODeadline.now().uptimeNanoseconds
        // A read noted after `last` was loaded can be later than `now`: heard.
        return now <= last || now - last <= UInt64(max(0, TimeAmount(interval).nanoseconds))
    }
}
