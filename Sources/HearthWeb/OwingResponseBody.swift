public import HummingbirdCore
import Synchronization

extension ResponseBody {
    /// A body written by `write`, which owes `ifNeverRun` if Hummingbird drops it without running it.
    ///
    /// Hummingbird writes a closure-bodied response's head before it runs the closure; when that write fails (the
    /// client reset its connection while the answer was being made, a gateway reset a node's link stream), the
    /// closure is released unrun, and with it whatever it does after the body: a whole answer's metering, the end of
    /// a node's count of requests in flight. Work the closure does after its last byte must be owed here too, or a
    /// client that resets at the wrong moment leaves a node's slot taken and its work unmetered.
    /// `ifNeverRun` runs when the body is released, on that thread: it must not block (start a task for more).
    public static func owing(
        contentLength: Int? = nil,
        ifNeverRun: @escaping @Sendable () -> Void,
        _ write: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void
    ) -> ResponseBody {
        let debt = BodyDebt(ifNeverRun)
        return ResponseBody(contentLength: contentLength) { writer in
            debt.cancel()
            try await write(&writer)
        }
    }
}

/// Runs its work when released, unless cancelled first.
private final class BodyDebt: Sendable {
    private let owed: Mutex<(@Sendable () -> Void)?>

    init(_ work: @escaping @Sendable () -> Void) {
        owed = Mutex(work)
    }

    func cancel() {
        owed.withLock { $0 = nil }
    }

    deinit {
        owed.withLock { $0.take() }?()
    }
}
