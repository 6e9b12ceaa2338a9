package import NIOCore

/// Merges the flushes a link asks for in one turn of its event loop into one, which that turn makes at its end.
///
/// Every stream of a link flushes its own writes: a node relaying eight engine streams flushed each token of each
/// stream on its own, so each token cost a TLS record pass, a `write` to the socket and, on the other end, a wake-up
/// and a read. HTTP/2 merges the flushes made while the link itself is being read, but a node writes while it reads
/// its engines' connections. Sitting between HTTP/2 and TLS, this handler holds a flush until the event loop has
/// handled every event that was ready with it, so the tokens that several engine connections delivered together
/// leave in one write. It adds no waiting: the loop runs the held flush before it sleeps again, and a lone token goes
/// out as soon as its turn is over.
package final class LinkFlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private var flushHeld = false

    package init() {}

    package func flush(context: ChannelHandlerContext) {
        guard !flushHeld else { return }
        flushHeld = true
        // Tasks queued from within the loop run after the turn's I/O events, before the loop waits again.
        context.eventLoop.assumeIsolated().execute {
            self.release(context: context)
        }
    }

    /// A close must not overtake a held flush: the last frames (a stream's end, a GOAWAY) go first.
    package func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        release(context: context)
        context.close(mode: mode, promise: promise)
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        release(context: context)
    }

    private func release(context: ChannelHandlerContext) {
        guard flushHeld else { return }
        flushHeld = false
        context.flush()
    }
}
