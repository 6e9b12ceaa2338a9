/// Runs the node's preparation step once, however many engines wait for it; every waiter gets its outcome.
actor Preparation {
    private var step: (@Sendable () async throws -> Void)?
    private var running: Task<Void, any Error>?

    init(_ step: (@Sendable () async throws -> Void)?) {
        self.step = step
    }

    /// Waits until preparation has finished, starting it on the first call.
    /// - Throws: what the step threw (every waiter sees the same error).
    func run() async throws {
        if running == nil, let step {
            running = Task { try await step() }
            self.step = nil
        }
        try await running?.value
    }
}
