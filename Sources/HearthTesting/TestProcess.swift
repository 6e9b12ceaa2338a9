import Foundation
import HearthNode
import NIOPosix
import Synchronization

/// A child process for integration tests: stdout is read line by line (a machine protocol such as `READY port=…`),
/// stderr goes to a file that failure messages quote.
///
/// Children are started with the project's own `Subprocess` (posix_spawn, a reaper thread per child, a process
/// group of their own, a parent-death signal), not Foundation's `Process`, which could leave a crashed child as a
/// zombie it never reaped. They run with `SWIFT_BACKTRACE=enable=no`: the runtime's backtracer once stalled for half
/// an hour reading a crashed child's memory. Every wait here is bounded and returns when the test is cancelled
/// (Swift Testing's `.timeLimit` cancels it), killing the child; a child that died of a signal has its stderr tail
/// printed to the test run's stderr so the CI log shows why.
package final class TestProcess: Sendable {
    package let name: String
    private let process: Subprocess
    private let lines = Mutex<
        (all: [String], waiters: [(id: UUID, match: @Sendable (String) -> Bool, continuation: CheckedContinuation<String?, Never>)], closed: Bool)
    >(([], [], false))
    package let stderrPath: String

    /// Starts `executable` with `arguments`; the environment is inherited, with `environment` on top.
    package init(name: String, executable: String, arguments: [String], environment: [String: String] = [:], directory: String) async throws {
        self.name = name
        stderrPath = (directory as NSString).appendingPathComponent("\(name).stderr")
        let errorFD = open(stderrPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard errorFD >= 0 else { throw TestProcessError("cannot create \(stderrPath)") }
        defer { close(errorFD) }
        let pipe = try Subprocess.makePipe()
        var merged = ProcessInfo.processInfo.environment
        merged["SWIFT_BACKTRACE"] = "enable=no"
        merged.merge(environment) { _, new in new }
        do {
            process = try await Subprocess.spawn(
                executable,
                arguments,
                environment: merged,
                outputFD: pipe.write,
                errorFD: errorFD,
                dieWithParent: true
            )
        } catch {
            close(pipe.read)
            close(pipe.write)
            throw error
        }
        close(pipe.write)
        let reader = FileHandle(fileDescriptor: pipe.read, closeOnDealloc: true)
        Thread.detachNewThread { [self] in
            Subprocess.readLines(from: reader) { received($0) }
            closeLines()
        }
    }

    /// Runs `hearth` with `arguments` to the end and returns its exit status, standard output lines and standard error.
    package static func hearth(
        _ arguments: [String],
        in directory: String,
        timeout: Duration = .seconds(60)
    ) async throws -> (
        status: Int32, output: [String], errors: String
    ) {
        let run = try await TestProcess(
            name: "hearth-\(arguments.prefix(2).joined(separator: "-"))-\(UUID().uuidString.prefix(6))",
            executable: try TestEnvironment.hearthBinary(),
            arguments: arguments,
            directory: directory
        )
        let status = await run.waitForExit(timeout: timeout)
        return (status, run.output, run.errorOutput)
    }

    package var pid: Int32 { process.pid }
    package var isRunning: Bool { !process.hasExited }

    /// Standard output so far.
    package var output: [String] { lines.withLock { $0.all } }

    /// Standard error so far, for failure messages.
    package var errorOutput: String {
        (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
    }

    /// Waits for the first stdout line matching `match`, and returns it; fails if the process exits, `timeout`
    /// passes or the test is cancelled.
    package func waitForLine(timeout: Duration = .seconds(60), where match: @escaping @Sendable (String) -> Bool) async throws -> String {
        let id = UUID()
        let line: String? = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let immediate: String?? = self.lines.withLock { state in
                        if let found = state.all.first(where: match) { return .some(found) }
                        if state.closed { return .some(nil) }
                        state.waiters.append((id, match, continuation))
                        return nil
                    }
                    if let immediate { continuation.resume(returning: immediate) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                self.cancelWaiter(id)
                return nil
            }
            let first = await withTaskCancellationHandler {
                await group.next() ?? nil
            } onCancel: {
                self.cancelWaiter(id)
            }
            self.cancelWaiter(id)
            group.cancelAll()
            return first
        }
        guard let line else {
            let why =
                Task.isCancelled ? "the test was cancelled" : isRunning ? "timed out after \(timeout)" : "it exited with \(process.exitCode ?? -1)"
            throw TestProcessError("\(name) printed no matching line (\(why)). stderr:\n\(errorOutput.suffix(4000))")
        }
        return line
    }

    /// Sends `signal` to the process (not to its group: a node's engines must see only what the node does).
    package func send(_ signal: Int32) {
        guard !process.hasExited else { return }
        kill(process.pid, signal)
    }

    /// Waits until the process exits and returns its exit code (128 + signal number when a signal ended it). After
    /// `timeout`, or when the test is cancelled, it kills the process group and returns -9.
    @discardableResult
    package func waitForExit(timeout: Duration = .seconds(20)) async -> Int32 {
        let process = self.process
        let exited: Int32? = await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await process.waitForExit() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let exited else {
            process.signal(SIGKILL)
            _ = await process.waitForExit()
            await drainOutput()
            return -9
        }
        if exited > 128 {
            let tail = errorOutput.suffix(3000)
            FileHandle.standardError.write(Data("[\(name)] ended by signal \(exited - 128); last stderr:\n\(tail)\n".utf8))
        }
        await drainOutput()
        return exited
    }

    /// SIGTERM, then wait (SIGKILL after `grace`). Returns the exit code.
    @discardableResult
    package func stop(grace: Duration = .seconds(20)) async -> Int32 {
        if let code = process.exitCode { return code }
        send(SIGTERM)
        return await waitForExit(timeout: grace)
    }

    /// Waits (briefly) until the reader thread has seen the end of standard output, so `output` has every line the
    /// process printed before it exited.
    private func drainOutput() async {
        let deadline = ContinuousClock.now + .seconds(2)
        while !lines.withLock({ $0.closed }) && ContinuousClock.now < deadline {
            do { try await Task.sleep(for: .milliseconds(5)) } catch { return }
        }
    }

    private func received(_ line: String) {
        let ready = lines.withLock { state in
            state.all.append(line)
            let matched = state.waiters.filter { $0.match(line) }
            state.waiters.removeAll { waiter in matched.contains { $0.id == waiter.id } }
            return matched.map(\.continuation)
        }
        for continuation in ready { continuation.resume(returning: line) }
    }

    private func closeLines() {
        let waiting = lines.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters.map(\.continuation)
        }
        for continuation in waiting { continuation.resume(returning: nil) }
    }

    private func cancelWaiter(_ id: UUID) {
        let waiter = lines.withLock { state -> CheckedContinuation<String?, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        waiter?.resume(returning: nil)
    }

    deinit {
        process.signal(SIGKILL)
    }
}

package struct TestProcessError: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
