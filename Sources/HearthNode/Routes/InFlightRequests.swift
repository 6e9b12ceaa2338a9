import Synchronization

/// The requests a node is answering, by the gateway's request id, so the gateway can cancel one whose client went
/// away (`POST /link/v1/cancel`) and still get a receipt for the work done, instead of resetting the stream.
final class InFlightRequests: Sendable {
    private let open = Mutex<[String: Cancellation]>([:])

    /// Registers `requestID`; the caller must `close` it when the answer ends. A stream can be handed over.
    func open(_ requestID: String, stream: Bool = false) -> Cancellation {
        let cancellation = Cancellation(stream: stream)
        open.withLock { $0[requestID] = cancellation }
        return cancellation
    }

    func close(_ requestID: String, _ cancellation: Cancellation) {
        open.withLock { open in
            if open[requestID] === cancellation { open[requestID] = nil }
        }
    }

    /// No request is open. A stream's stays open until its last part (the trailers with its receipt) is written,
    /// after its engine's request has ended and left the node's load.
    var isEmpty: Bool { open.withLock { $0.isEmpty } }

    /// Cancels `requestID`; `false` when the node is not answering it (it ended, or never came).
    func cancel(_ requestID: String) -> Bool {
        guard let cancellation = open.withLock({ $0[requestID] }) else { return false }
        cancellation.cancel()
        return true
    }

    /// The node stops at the end of its drain: every stream under way ends now, with its receipt and
    /// `LinkProtocol.handoverTrailer`, so that the gateway continues it on another node instead of the link cutting it.
    /// Returns how many were handed over; answers that do not stream are left to finish.
    @discardableResult
    func handOverStreams() -> Int {
        let streams = open.withLock { $0.values.filter(\.stream) }
        for stream in streams { stream.cancel(handover: true) }
        return streams.count
    }
}

/// One request's cancellation: a flag, and the action that stops its engine request.
final class Cancellation: Sendable {
    private let state = Mutex<(cancelled: Bool, handover: Bool, action: (@Sendable () -> Void)?)>((false, false, nil))
    /// Whether the answer is a stream (only a stream can be handed over).
    let stream: Bool

    init(stream: Bool = false) {
        self.stream = stream
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }
    /// Cancelled to be handed over to another node (the node drains), not because the client went away.
    var isHandover: Bool { state.withLock { $0.handover } }

    /// Runs `action` on cancellation (at once if already cancelled).
    func onCancel(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.action = action
            return false
        }
        if now { action() }
    }

    func cancel(handover: Bool = false) {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            guard !state.cancelled else { return nil }
            state.cancelled = true
            state.handover = handover
            defer { state.action = nil }
            return state.action
        }
        action?()
    }
}
