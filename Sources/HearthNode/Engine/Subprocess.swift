package import Foundation
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with `posix_spawn`, with a clean signal state.
///
/// Foundation's `Process` lets the child inherit the spawning thread's signal mask. Threads of NIO's pool block
/// almost every signal, so a child started from one would never see SIGTERM or SIGCHLD (cmake then hangs waiting
/// for its own children, and llama-server ignores a polite stop). Here the child always starts with an empty mask,
/// default signal dispositions, and its own process group (so a Ctrl-C in the terminal reaches only Hearth).
///
/// The spawn runs on a thread of its own that lives as long as the process: a parent-death signal set with
/// `setpriv --pdeathsig` follows the thread that spawned the child, and must not fire while Hearth still runs. It is
/// not NIO's shared pool (as many threads as cores), where models are hashed: a spawn once waited there behind
/// several 100 MB hashes for over 20 s on a loaded machine.
package final class Subprocess: Sendable {
    private static let spawner: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        return pool
    }()

    package let pid: Int32
    private let exit = ExitBox()

    private init(pid: Int32) {
        self.pid = pid
    }

    /// Starts `executable` (an absolute path) with `arguments`; stdout goes to `outputFD` and stderr to `errorFD`
    /// (which defaults to `outputFD`; /dev/null without either), stdin reads /dev/null. The child holds no other
    /// descriptor of ours: every one from 3 up is closed in it, so an engine never holds the gateway's listening
    /// sockets or the link, except those in `keep`, which it gets as 3, 4, … With `dieWithParent`, the child is run
    /// under `setpriv --pdeathsig KILL` when available.
    package static func spawn(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        outputFD: Int32? = nil,
        errorFD: Int32? = nil,
        keep: [Int32] = [],
        dieWithParent: Bool = false
    ) async throws -> Subprocess {
        let direct = [executable] + arguments
        let command = dieWithParent ? which("setpriv").map { [$0, "--pdeathsig", "KILL", "--"] + direct } ?? direct : direct
        let environment = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let pid = try await spawner.runIfActive {
            try spawnBlocking(command, environment: environment, outputFD: outputFD, errorFD: errorFD ?? outputFD, keep: keep)
        }
        let process = Subprocess(pid: pid)
        // One thread per child waits for it; it holds no lock and ends when the child does.
        Thread.detachNewThread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
            process.exit.finish(Self.exitCode(status))
        }
        return process
    }

    /// The exit code once the child has ended (128 + signal number when a signal ended it).
    package var exitCode: Int32? { exit.code }
    package var hasExited: Bool { exit.code != nil }

    /// Waits until the child has ended and returns its exit code.
    package func waitForExit() async -> Int32 {
        await exit.wait()
    }

    /// Sends `signal` to the child's process group, or to the child alone if that fails.
    package func signal(_ signal: Int32) {
        guard !hasExited else { return }
        if kill(-pid, signal) != 0 { kill(pid, signal) }
    }

    /// Asks the child to stop (SIGTERM), then kills it (SIGKILL) if it still runs after `grace`.
    func stop(grace: Duration) async {
        guard !hasExited else { return }
        signal(SIGTERM)
        // The exit itself is the event: race it against the grace period (a cancelled caller kills at once).
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await self.waitForExit() }
            group.addTask { try? await Task.sleep(for: grace) }
            await group.next()
            group.cancelAll()
            // The group then waits for the exit, which a kill brings.
            signal(SIGKILL)
        }
    }

    /// Runs `executable` to its end, its stdout and stderr in one pipe whose lines go to `onLine` as they come; after
    /// `timeout`, when given, it is killed. Returns its exit code.
    /// - Throws: `SubprocessError` when it cannot start.
    static func run(
        _ executable: String,
        _ arguments: [String],
        environment: [String: String]? = nil,
        timeout: Duration? = nil,
        onLine: @escaping @Sendable (String) -> Void
    ) async throws -> Int32 {
        let output = try makePipe()
        let process: Subprocess
        do {
            process = try await spawn(executable, arguments, environment: environment, outputFD: output.write)
        } catch {
            close(output.read)
            close(output.write)
            throw error
        }
        close(output.write)
        let reader = FileHandle(fileDescriptor: output.read, closeOnDealloc: true)
        // A child that hangs is killed, which closes the pipe and ends the read.
        let watchdog = timeout.map { limit in
            Task {
                try await Task.sleep(for: limit)
                process.signal(SIGKILL)
            }
        }
        defer { watchdog?.cancel() }
        // A thread of its own: a build prints for minutes, and must not hold a thread of NIO's shared pool (as many
        // threads as cores) that short blocking work waits for.
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                readLines(from: reader, onLine)
                done.resume()
            }
        }
        return await process.waitForExit()
    }

    /// A pipe whose two ends are closed on exec, so only the descriptor handed to a child survives in it.
    package static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SubprocessError("cannot create a pipe: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    /// Reads `handle` to its end, passing each line (without its newline) to `onLine`. It blocks: call it on a
    /// thread of its own or of NIO's thread pool, never on the cooperative pool.
    package static func readLines(from handle: FileHandle, _ onLine: (String) -> Void) {
        var pending = Data()
        while case let data = handle.availableData, !data.isEmpty {
            pending.append(data)
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                onLine(String(decoding: pending[pending.startIndex..<newline], as: UTF8.self))
                pending.removeSubrange(pending.startIndex...newline)
            }
        }
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

    static func exitCode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    private static func spawnBlocking(_ command: [String], environment: [String], outputFD: Int32?, errorFD: Int32?, keep: [Int32]) throws -> pid_t {
        // Each kept descriptor lands on its own number; one already sitting on another's target would be lost.
        for (index, fd) in keep.enumerated() where fd < 3 + Int32(keep.count) && fd != 3 + Int32(index) {
            throw SubprocessError("descriptor \(fd) would be overwritten before it is handed over")
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        for (fd, target) in [(outputFD, Int32(1)), (errorFD, Int32(2))] {
            if let fd {
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            } else {
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
            }
        }
        for (index, fd) in keep.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, 3 + Int32(index)) }
        closeInheritedDescriptors(&actions, from: 3 + Int32(keep.count))

        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv + envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, command[0], &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw SubprocessError("cannot start \(command[0]): \(String(cString: strerror(result)))")
        }
        return pid
    }
}

/// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34 and later), looked up at run time because Glibc's module
/// map hides GNU extensions.
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()

extension Subprocess {
    /// Closes every descriptor from 3 up in the child, after the dups above it: `POSIX_SPAWN_CLOEXEC_DEFAULT` does
    /// not exist on Linux. Without `addclosefrom`, every open descriptor of ours is marked close-on-exec instead
    /// (the dups onto 0–2 clear that flag on their copies).
    fileprivate static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t, from first: Int32) {
        if let addCloseFrom, addCloseFrom(&actions, first) == 0 { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for name in open {
            guard let fd = Int32(name), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }
}

/// The child could not be started.
struct SubprocessError: Error, CustomStringConvertible, Sendable {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Holds a child's exit code and the tasks waiting for it.
private final class ExitBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int32?
    private var waiters: [CheckedContinuation<Int32, Never>] = []

    var code: Int32? { lock.withLock { value } }

    func finish(_ code: Int32) {
        let waiting = lock.withLock {
            value = code
            defer { waiters = [] }
            return waiters
        }
        for waiter in waiting { waiter.resume(returning: code) }
    }

    func wait() async -> Int32 {
        await withCheckedContinuation { continuation in
            let ready: Int32? = lock.withLock {
                if let value { return value }
                waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}
