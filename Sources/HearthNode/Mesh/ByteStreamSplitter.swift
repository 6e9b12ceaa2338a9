import Foundation
import HTTPTypes
import HearthCore
import HearthMesh
import NIOCore
import NIOHTTPTypes

/// Sits between a link stream's HTTP codec and the router. A request for one of the link's byte-stream routes
/// (`LinkByteStreams`) never reaches the router: once the connection it asks for is open, the stream is answered
/// 200 and its body is spliced to that connection on the event loop (`Splice`), so each chunk crosses the node
/// without a hop through Swift's task pool; a refusal is answered here, in the OpenAI error shape. Every other
/// request passes through untouched.
final class ByteStreamSplitter: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private enum State {
        /// No request head yet.
        case waiting
        /// A request for the router: everything passes.
        case routed
        /// Opening the connection; what the gateway sends meanwhile waits (the stream's window holds the rest).
        case opening(early: [SpliceInput], task: Task<Void, Never>?)
        /// Answered (a splice before this handler now owns the stream, or a refusal was sent).
        case answered
        case closed
    }

    private let streams: LinkByteStreams
    private var state = State.waiting
    private var context: ChannelHandlerContext?

    init(streams: LinkByteStreams) {
        self.streams = streams
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        switch state {
        case .routed:
            context.fireChannelRead(data)
        case .waiting:
            guard case .head(let request) = part, let open = streams.route(request) else {
                state = .routed
                context.fireChannelRead(data)
                return
            }
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let loop = context.eventLoop
            state = .opening(early: [], task: nil)
            let task = Task {
                let result = await open(loop)
                loop.execute { handler.value.opened(result) }
            }
            if case .opening(let early, nil) = state { state = .opening(early: early, task: task) }
        case .opening(var early, let task):
            switch part {
            case .head: break
            case .body(let bytes): early.append(.bytes(bytes))
            case .end: early.append(.end)
            }
            state = .opening(early: early, task: task)
        case .answered, .closed:
            break
        }
    }

    func read(context: ChannelHandlerContext) {
        // While the connection opens, the gateway's bytes wait in the stream's window.
        if case .opening = state { return }
        context.read()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if case .opening(_, let task) = state { task?.cancel() }
        state = .closed
        context.fireChannelInactive()
    }

    private func opened(_ result: Result<SplicedConnection, APIFailure>) {
        guard case .opening(let early, _) = state, let context else {
            if case .success(let connection) = result { connection.close() }
            return
        }
        state = .answered
        switch result {
        case .failure(let failure):
            var head = HTTPResponse(status: .init(code: failure.status))
            head.headerFields[.contentType] = "application/json"
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.write(wrapOutboundOut(.body(ByteBuffer(bytes: failure.body.json))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        case .success(let connection):
            let splice = SpliceHandler<LinkServerFraming>(eventLoop: context.eventLoop, early: early)
            do {
                try context.pipeline.syncOperations.addHandler(splice, position: .before(self))
            } catch {
                connection.close()
                context.close(promise: nil)
                return
            }
            var head = HTTPResponse(status: .ok)
            head.headerFields[.contentType] = "application/octet-stream"
            context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
            Splice.join(splice.peer, connection.peer)
        }
    }
}

/// The body of a link stream the gateway opened to this node, as the parts its HTTP codec speaks.
enum LinkServerFraming: SpliceFraming {
    static func input(_ part: HTTPRequestPart) -> SpliceInput {
        switch part {
        case .head: .none
        case .body(let bytes): .bytes(bytes)
        case .end: .end
        }
    }
    static func output(_ bytes: ByteBuffer) -> HTTPResponsePart { .body(bytes) }
    static var end: HTTPResponsePart? { .end(nil) }
}
