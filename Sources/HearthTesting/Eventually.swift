/// Polls `value` with a bound until it yields something: for state another process or task reaches on its own time
/// (a row written after the response, a process gone). Cancellation-aware; throws `TestProcessError` naming `what`
/// when `limit` passes.
package func eventually<T>(
    _ what: String,
    within limit: Duration = .seconds(20),
    every interval: Duration = .milliseconds(50),
    _ value: () async throws -> T?
) async throws -> T {
    let deadline = ContinuousClock.now + limit
    while true {
        if let found = try await value() { return found }
        guard ContinuousClock.now < deadline else { throw TestProcessError("timed out after \(limit) waiting for \(what)") }
        try await Task.sleep(for: interval)
    }
}
