import Foundation
import NIOPosix
import Synchronization

/// One running engine process (`llama-server`), started so that it never outlives the node.
///
/// - Where `setpriv` exists (util-linux), the engine runs under `setpriv --pdeathsig KILL`: the kernel kills it when
///   the node dies, even by SIGKILL. The parent-death signal follows the *thread* that spawned the child, so the spawn
///   runs on NIO's shared thread pool, whose threads live as long as the process (Swift's cooperative threads may exit).
/// - Foundation starts the child in its own process group, so a Ctrl-C in the terminal reaches the node (which drains
///   and then stops the engine) rather than killing the engine mid-stream; stopping signals that whole group.
final class EngineProcess: Sendable {
    private let process: Process
    private let exit: Mutex<(status: Int32?, waiters: [CheckedContinuation<Int32, Never>])> = Mutex((nil, []))

    /// The process id, for tests and logs.
    var pid: Int32 { process.processIdentifier }

    private init(process: Process) {
        self.process = process
    }

    /// Starts `executable` with `arguments`, writing its output to `logPath`.
    static func launch(executable: String, arguments: [String], logPath: String) async throws -> EngineProcess {
        var command = [executable] + arguments
        if let setpriv = Self.which("setpriv") {
            command = [setpriv, "--pdeathsig", "KILL", "--"] + command
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        let engine = EngineProcess(process: process)
        process.terminationHandler = { finished in
            engine.exited(with: finished.terminationStatus)
        }
        try await NIOThreadPool.singleton.runIfActive {
            try process.run()
        }
        try? log.close()
        return engine
    }

    /// Waits until the process has exited and returns its status.
    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status: Int32? = exit.withLock { state in
                if let status = state.status { return status }
                state.waiters.append(continuation)
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    var hasExited: Bool { exit.withLock { $0.status != nil } }

    /// Asks the engine to stop (SIGTERM), then kills it (SIGKILL) if it is still running after `grace`.
    func stop(grace: Duration) async {
        guard !hasExited else { return }
        signal(SIGTERM)
        let deadline = ContinuousClock.now + grace
        while !hasExited, ContinuousClock.now < deadline, !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if !hasExited {
            signal(SIGKILL)
            _ = await waitForExit()
        }
    }

    /// Signals the engine's process group (the engine is its leader), falling back to the process alone.
    private func signal(_ signal: Int32) {
        let pid = process.processIdentifier
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    private func exited(with status: Int32) {
        let waiters = exit.withLock { state in
            state.status = status
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// The full path of `tool` on `PATH`, if present.
    static func which(_ tool: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") {
            let candidate = "\(folder)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
