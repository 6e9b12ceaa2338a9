package import HummingbirdCore
package import NIOCore
import Synchronization

/// Serves the streams of a link with a responder, as Hummingbird's server serves a socket's requests: the node serves
/// its gateway's streams this way, and a gateway the streams a peer gateway forwards to it.
///
/// A stream the other side resets (its client went away) closes the stream's channel; the request's work is then
/// cancelled, so a request still waiting for its answer's head (a long non-streamed answer) is dropped at once instead
/// of generating for nobody. Once the body streams, a failed write ends it the same way.
package enum LinkResponder {
    /// `respond` answers one request on one stream's channel; `failure` is the answer when it throws anything but
    /// cancellation (in the envelope of whoever serves). `onItsEventLoop` says which requests run on their stream's
    /// event loop instead of the cooperative pool: only work that never blocks (see `EventLoopExecutor`).
    package static func channel(
        respond: @escaping @Sendable (Request, any Channel) async throws -> Response,
        failure: @escaping @Sendable (any Error) -> Response,
        onItsEventLoop: @escaping @Sendable (Request) -> Bool = { _ in false }
    ) -> HTTP1Channel {
        HTTP1Channel(responder: { request, writer, channel in
            let response: Response
            do {
                let executor = onItsEventLoop(request) ? EventLoopExecutor(channel.eventLoop) : nil
                let work = Task(executorPreference: executor) { try await respond(request, channel) }
                // The stream's close cancels the work, through a handle let go of once the work is done: a finished
                // task keeps its async frames' memory until the last reference to it goes, and the close comes only
                // when a streamed answer ends (the node held 10 KB a stream this way, `forward`'s frame).
                let handle = WorkHandle(work)
                channel.closeFuture.whenComplete { _ in handle.cancel() }
                defer { handle.release() }
                response = try await withTaskCancellationHandler {
                    try await work.value
                } onCancel: {
                    work.cancel()
                }
            } catch is CancellationError {
                return
            } catch {
                response = failure(error)
            }
            try await writer.write(response: response.head, body: response.body)
        })
    }
}

/// A task to cancel until it is let go of.
private final class WorkHandle: Sendable {
    private let task: Mutex<Task<Response, any Error>?>

    init(_ task: Task<Response, any Error>) {
        self.task = Mutex(task)
    }

    func cancel() { task.withLock { $0?.cancel() } }

    func release() { task.withLock { $0 = nil } }
}
