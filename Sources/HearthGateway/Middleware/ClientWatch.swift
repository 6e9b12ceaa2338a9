import NIOCore
import Synchronization

/// The client connection a request came on, watched while the gateway waits for a node.
///
/// Hummingbird does not cancel a handler whose client goes away, and a handler waiting for a node reads nothing from
/// its client, so it cannot see the end either: a client that gave up on a slow whole answer, or on an engine (an
/// owner's server) that accepts requests and never answers, held the node's slot and the gateway's count of requests
/// in flight until the engine answered, which a hung one never does. While a request waits (`whileWaiting`), the
/// client's going runs what the wait says: before the node's head, the wait is cancelled (on a link, the node's
/// stream is reset and the node drops the engine's request; the dispatcher asks no other node); after it, the node is
/// asked to stop, and its answer ends soon, with its receipt for the work done (`Dispatcher.open`).
///
/// A client that closes its side of the connection counts as gone, as nginx counts it (`proxy_ignore_client_abort`
/// off): Hummingbird allows half-closed connections, so the end of the client's input is an event, not a close.
///
/// One per connection (`EventLoopChildChannel`), given to the request's context (`GatewayRequestContext.clientWatch`)
/// through a task-local, and from there to the dispatcher explicitly: a task started from a request's (a spot check)
/// inherits task-locals, and must not be cancelled by that request's client going.
package final class ClientWatch: Sendable {
    /// The watch of the connection whose requests this task reads; `nil` off a live connection (router tests).
    @TaskLocal static var current: ClientWatch?

    /// What the client's going does to a wait.
    enum OnLeave: Sendable {
        /// The waiting task is cancelled.
        case cancel
        /// This runs (once), and the wait goes on.
        case run(@Sendable () -> Void)
    }

    private struct State {
        var closed = false
        /// The task inside `whileWaiting`, only while it is inside: cancelled under the lock, so it is alive then.
        nonisolated(unsafe) var waiting: UnsafeCurrentTask?
        var onLeave: OnLeave = .cancel
    }

    private let state = Mutex(State())

    /// Whether the client's side of the connection has ended.
    var clientLeft: Bool { state.withLock { $0.closed } }

    /// The client's side ended: a wait under way now does what it said.
    func connectionClosed() {
        let action: (@Sendable () -> Void)? = state.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            guard let task = state.waiting else { return nil }
            switch state.onLeave {
            case .cancel:
                // Under the lock: the task cannot leave its wait, so it is alive.
                task.cancel()
                return nil
            case .run(let action): return action
            }
        }
        action?()
    }

    /// Runs `body` (a wait for a node); if the client `watch` watches goes away meanwhile (or has gone), `onLeave` is
    /// done. Without a watch (no client: a spot check, a test), just `body`.
    static func whileWaiting<Result>(
        _ watch: ClientWatch?,
        onLeave: OnLeave = .cancel,
        _ body: () async throws -> Result
    ) async rethrows -> Result {
        guard let watch else { return try await body() }
        return try await watch.whileWaiting(onLeave: onLeave, body)
    }

    private func whileWaiting<Result>(onLeave: OnLeave, _ body: () async throws -> Result) async rethrows -> Result {
        // Either the client has gone already, and the action is done here, or the wait is registered, and it is done
        // by `connectionClosed`: decided under one lock, so it is done once.
        let gone = withUnsafeCurrentTask { task in
            state.withLock { state in
                if state.closed { return true }
                state.waiting = task
                state.onLeave = onLeave
                return false
            }
        }
        defer { state.withLock { $0.waiting = nil } }
        if gone {
            switch onLeave {
            case .cancel: withUnsafeCurrentTask { $0?.cancel() }
            case .run(let action): action()
            }
        }
        return try await body()
    }
}

/// Tells a connection's `ClientWatch` when the client's side ends: its input closed, or the connection.
final class ClientWatchHandler: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = NIOAny
    let watch: ClientWatch

    init(_ watch: ClientWatch) {
        self.watch = watch
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .inputClosed? = event as? ChannelEvent { watch.connectionClosed() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        watch.connectionClosed()
        context.fireChannelInactive()
    }
}
