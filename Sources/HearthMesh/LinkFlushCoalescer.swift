package import NIOCore

/// Merges the flushes a link asks for into fewer writes: those of one turn of its event loop leave together at the
/// turn's end, and those of streamed tokens (`deferringFlushes`) wait up to `streamDelay` for the link's next write.
///
/// Every stream of a link flushes its own writes: a node relaying eight engine streams flushed each token of each
/// stream on its own, so each token cost a TLS record pass, a `write` to the socket and, on the other end, a wake-up
/// and a read. HTTP/2 merges the flushes made while the link itself is being read, but a node writes while it reads
/// its engines' connections. Sitting between HTTP/2 and TLS, this handler holds a flush until the event loop has
/// handled every event that was ready with it, so the tokens that several engine connections delivered together
/// leave in one write; a lone answer or head goes out as soon as its turn is over.
///
/// Engines deliver their streams' tokens one at a time, rarely in the same turn, so a streamed token may wait a
/// little longer: up to `streamDelay`, for the tokens of the link's other streams (or for any other write, which
/// takes it along). Two milliseconds are nothing beside the tens between an engine's tokens; with eight paced streams
/// about five tokens left per write instead of one, and the CPU per token of the node and of the gateway (woken once
/// per write) fell by a quarter to a half (bench/README.md, fifth pass).
package final class LinkFlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    /// The longest a streamed token waits on this side of the link for others to go with.
    package static let streamDelay: TimeAmount = .milliseconds(2)

    /// A flush is held for the end of this turn.
    private var flushHeld = false
    /// A flush is held for `streamDelay` after the first token that asked for it.
    private var delayedFlush: Scheduled<Void>?
    /// The flushes asked for now are streamed tokens'.
    private var deferring = false

    package init() {}

    /// Runs `body`, whose flushes on this link (a streamed token written to one of its streams, on this handler's
    /// event loop) may wait up to `streamDelay`.
    package func deferringFlushes<Result>(_ body: () throws -> Result) rethrows -> Result {
        deferring = true
        defer { deferring = false }
        return try body()
    }

    package func flush(context: ChannelHandlerContext) {
        if deferring {
            guard !flushHeld, delayedFlush == nil else { return }
            delayedFlush = context.eventLoop.assumeIsolated().scheduleTask(in: Self.streamDelay) {
                self.delayedFlush = nil
                context.flush()
            }
            return
        }
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

    /// Flushes now what either kind of held flush holds.
    private func release(context: ChannelHandlerContext) {
        guard flushHeld || delayedFlush != nil else { return }
        flushHeld = false
        delayedFlush?.cancel()
        delayedFlush = nil
        context.flush()
    }
}
