import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Holds a response head's flush until the event loop's turn ends, so that a body written right after it leaves in
/// the same `write`.
///
/// Hummingbird writes a response whose body is a closure (a whole answer that is metered once the client has it, a
/// stream) in two steps: the head, flushed, then what the closure writes. Each flush was its own `write`, and a
/// client reading a whole answer woke for the head and again for the body (`bench/README.md`, tenth pass). The
/// closure runs on the connection's loop (`EventLoopChildChannel`) and writes its first part without waiting when it
/// has one, so head and body now go out together; a stream's head, whose first event comes later, still leaves at
/// the end of the turn that wrote it. Informational heads (`100 Continue`) are flushed at once: the client waits
/// for them before it sends its body.
final class ResponseHeadFlushHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// The last part written is a final response's head.
    private var headAlone = false
    /// A flush is held for the end of this turn.
    private var flushHeld = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .head(let head) = unwrapOutboundIn(data) {
            headAlone = head.status.kind != .informational
        } else {
            headAlone = false
        }
        context.write(data, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard headAlone else {
            flushHeld = false
            context.flush()
            return
        }
        guard !flushHeld else { return }
        flushHeld = true
        // Tasks queued from within the loop run before it waits for I/O again.
        context.eventLoop.assumeIsolated().execute {
            self.release(context: context)
        }
    }

    /// A close must not overtake the head it holds.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        release(context: context)
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        release(context: context)
    }

    private func release(context: ChannelHandlerContext) {
        guard flushHeld else { return }
        flushHeld = false
        context.flush()
    }
}
