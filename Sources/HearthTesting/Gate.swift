import Synchronization

/// Holds whoever waits on it until `open()`, and everyone after: a fake server's answer held back until the test has
/// done what it must do first.
public final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func open() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Returns once the gate is open.
    public func wait() async {
        await withCheckedContinuation { waiter in
            let now = state.withLock { state in
                if !state.open { state.waiting.append(waiter) }
                return state.open
            }
            if now { waiter.resume() }
        }
    }
}
