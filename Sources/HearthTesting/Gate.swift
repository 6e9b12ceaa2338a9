import Synchronization

/// Holds whoever waits on it until `open()`, and everyone after: a fake server's answer held back until the test has
/// done what it must do first.
package final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    package init() {}

    package func open() {
        let waiting = state.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for waiter in waiting { waiter.resume() }
    }

    /// Returns once the gate is open.
    package func wait() async {
        await withCheckedContinuation { waiter in
            let now = state.withLock { state in
                if !state.open { state.waiting.append(waiter) }
                return state.open
            }
            if now { waiter.resume() }
        }
    }
}
