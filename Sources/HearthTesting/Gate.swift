import HearthCore
import Synchronization

/// Holds whoever waits on it until `open()`, and everyone after: a fake server's answer held back until the test has
/// done what it must do first.
package final class Gate: Sendable {
    private let isOpen = Atomic(false)
    private let changed = ChangeSignal()

    package init() {}

    package func open() {
        isOpen.store(true, ordering: .releasing)
        changed.notify()
    }

    /// Returns once the gate is open, or once the waiting task is cancelled (a fake node's answer that the gateway
    /// gave up on, as a real link's stream would be reset).
    package func wait() async {
        await changed.wait(until: .now + .seconds(86_400 * 365)) { self.isOpen.load(ordering: .acquiring) }
    }
}
