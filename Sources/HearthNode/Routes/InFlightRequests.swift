import Synchronization

/// The requests a node is answering, by the gateway's request id, so the gateway can cancel one whose client went
/// away (`POST /link/v1/cancel`) and still get a receipt for the work done, instead of resetting the stream.
final class InFlightRequests: Sendable {
    private let open = Mutex<[String: Cancellation]>([:])

    /// Registers `requestID`; the caller must `close` it when the answer ends.
    func open(_ requestID: String) -> Cancellation {
        let cancellation = Cancellation()
        open.withLock { $0[requestID] = cancellation }
        return cancellation
    }

    func close(_ requestID: String, _ cancellation: Cancellation) {
        open.withLock { open in
            if open[requestID] === cancellation { open[requestID] = nil }
        }
    }

    /// Cancels `requestID`; `false` when the node is not answering it (it ended, or never came).
    func cancel(_ requestID: String) -> Bool {
        guard let cancellation = open.withLock({ $0[requestID] }) else { return false }
        cancellation.cancel()
        return true
    }
}

/// One request's cancellation: a flag, and the action that stops its engine request.
final class Cancellation: Sendable {
    private let state = Mutex<(cancelled: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Runs `action` on cancellation (at once if already cancelled).
    func onCancel(_ action: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.action = action
            return false
        }
        if now { action() }
    }

    func cancel() {
        let action = state.withLock { state -> (@Sendable () -> Void)? in
            guard !state.cancelled else { return nil }
            state.cancelled = true
            defer { state.action = nil }
            return state.action
        }
        action?()
    }
}
