import Synchronization

/// Wakes whoever waits for a state to change (a node's engines, draining and pausing; the gateway's registry).
/// Waiters re-check their own condition on each wake, so one signal serves them all, and nobody polls on a timer.
package final class ChangeSignal: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    package init() {}

    /// Counts the changes so far: a waiter that saw one value waits until it moves.
    package var generation: UInt64 { state.withLock { $0.generation } }

    /// Something changed: every waiter wakes and checks again.
    package func notify() {
        let woken = state.withLock { state in
            state.generation &+= 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Waits until `done()` holds, `deadline` passes or the task is cancelled. A change between the check and the wait
    /// is never missed: the wait registers only if nothing changed since the check.
    package func wait(until deadline: ContinuousClock.Instant, for done: @Sendable () -> Bool) async {
        while !done(), ContinuousClock.now < deadline, !Task.isCancelled {
            let seen = state.withLock { $0.generation }
            if done() { return }
            await withTaskGroup(of: Void.self) { group in
                let id = state.withLock { state -> UInt64 in
                    state.nextID &+= 1
                    return state.nextID
                }
                group.addTask { await self.next(after: seen, id: id) }
                group.addTask {
                    try? await Task.sleep(until: deadline)
                    self.release(id)
                }
                _ = await group.next()
                self.release(id)
                group.cancelAll()
            }
        }
    }

    private func next(after generation: UInt64, id: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let changed = state.withLock { state -> Bool in
                    // A cancellation that came before this registration would find nothing to release.
                    if state.generation != generation || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if changed { continuation.resume() }
            }
        } onCancel: {
            release(id)
        }
    }

    private func release(_ id: UInt64) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
    }
}
