import Foundation
import HearthNode
import NIOPosix
import Synchronization

/// A child process for integration tests: stdout is read line by line (a machine protocol such as `READY port=…`),
/// stderr goes to a file that failure messages quote.
public final class TestProcess: Sendable {
    public let name: String
    private let process: Process
    private let lines = Mutex<
        (all: [String], waiters: [(id: UUID, match: @Sendable (String) -> Bool, continuation: CheckedContinuation<String?, Never>)], closed: Bool)
    >(([], [], false))
    public let stderrPath: String

    /// Starts `executable` with `arguments`; the environment is inherited, with `environment` on top.
    ///
    /// Where `setpriv` exists the child gets a parent-death signal, so it cannot outlive a crashed test run. That
    /// signal follows the spawning thread, so the spawn happens on NIO's long-lived thread pool.
    public init(name: String, executable: String, arguments: [String], environment: [String: String] = [:], directory: String) async throws {
        self.name = name
        process = Process()
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            process.arguments = ["--pdeathsig", "KILL", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        stderrPath = (directory as NSString).appendingPathComponent("\(name).stderr")
        FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        process.standardInput = FileHandle.nullDevice
        let pipe = Pipe()
        process.standardOutput = pipe
        let process = self.process
        try await NIOThreadPool.singleton.runIfActive { try process.run() }
        let reader = pipe.fileHandleForReading
        Thread.detachNewThread { [self] in
            Subprocess.readLines(from: reader) { received($0) }
            closeLines()
        }
    }

    /// Runs `hearth` with `arguments` to the end and returns its exit status, standard output lines and standard error.
    public static func hearth(
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

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Standard output so far.
    public var output: [String] { lines.withLock { $0.all } }

    /// Standard error so far, for failure messages.
    public var errorOutput: String {
        (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
    }

    /// Waits for the first stdout line matching `match`, and returns it; fails if the process exits or `timeout` passes.
    public func waitForLine(timeout: Duration = .seconds(60), where match: @escaping @Sendable (String) -> Bool) async throws -> String {
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
            let first = await group.next() ?? nil
            self.cancelWaiter(id)
            group.cancelAll()
            return first
        }
        guard let line else {
            throw TestProcessError("\(name) printed no matching line (running: \(isRunning)). stderr:\n\(errorOutput.suffix(4000))")
        }
        return line
    }

    /// Sends `signal` to the process.
    public func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits until the process exits and returns its status; kills it with SIGKILL after `timeout`.
    @discardableResult
    public func waitForExit(timeout: Duration = .seconds(20)) async -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
            await drainOutput()
            return -9
        }
        await drainOutput()
        return process.terminationStatus
    }

    /// SIGTERM, then wait (SIGKILL after `grace`). Returns the exit status.
    @discardableResult
    public func stop(grace: Duration = .seconds(20)) async -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        send(SIGTERM)
        return await waitForExit(timeout: grace)
    }

    /// Waits (briefly) until the reader thread has seen the end of standard output, so `output` has every line the
    /// process printed before it exited.
    private func drainOutput() async {
        let deadline = ContinuousClock.now + .seconds(2)
        while !lines.withLock({ $0.closed }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
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
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

public struct TestProcessError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
