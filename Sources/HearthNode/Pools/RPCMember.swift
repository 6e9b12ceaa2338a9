import Foundation
import HearthCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One `ggml-rpc-server` serving this node's share of a pool, on 127.0.0.1 only.
///
/// It has no reliable ready line and exits 0 even when it failed to bind, so readiness is a successful connection
/// to its port and any exit is a failure. It is not restarted here: the head dies with it anyway, and the gateway
/// plans the pool again. Its tensor cache (`-c`, in `LLAMA_CACHE`) lives in the node's own folder, so a member
/// that serves the same model again receives the large tensors by hash only.
final class RPCMember: Sendable {
    let assignment: PoolAssignment
    let share: PoolPlan.Share
    private let status: Mutex<(state: PoolWorkStatus.State, detail: String?, port: Int?)>
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let changes: ChangeSignal

    init(assignment: PoolAssignment, share: PoolPlan.Share, changes: ChangeSignal) {
        self.assignment = assignment
        self.share = share
        self.changes = changes
        status = Mutex((.starting, "starting ggml-rpc-server", nil))
    }

    var workStatus: PoolWorkStatus {
        let current = status.withLock { $0 }
        return PoolWorkStatus(pool: assignment.pool, epoch: assignment.epoch, role: .member, state: current.state, detail: current.detail)
    }

    /// The rpc-server's port once it accepts connections.
    var readyPort: Int? { status.withLock { $0.state == .ready ? $0.port : nil } }

    private func update(_ state: PoolWorkStatus.State, _ detail: String?, port: Int? = nil) {
        status.withLock {
            // A failure is final for this piece of work.
            guard $0.state != .failed else { return }
            $0.state = state
            $0.detail = detail
            if let port { $0.port = port }
        }
        changes.notify()
    }

    func start(executable: String, threads: Int, sandbox: EngineSandbox, logDirectory: String, startTimeout: Duration, logger: Logger) {
        let work = Task {
            await run(
                executable: executable,
                threads: threads,
                sandbox: sandbox,
                logDirectory: logDirectory,
                startTimeout: startTimeout,
                logger: logger
            )
        }
        task.withLock { $0 = work }
    }

    /// Stops the rpc-server and waits until it is gone.
    func stop() async {
        let work = task.withLock { $0 }
        work?.cancel()
        await work?.value
    }

    private func run(executable: String, threads: Int, sandbox: EngineSandbox, logDirectory: String, startTimeout: Duration, logger: Logger) async {
        var logger = logger
        logger[metadataKey: "pool.id"] = "\(assignment.pool)"
        let port: Int
        let launch: EngineSandbox.Launch
        update(.starting, "starting ggml-rpc-server: choosing a port")
        do {
            port = try await EngineSupervisorService.freeLoopbackPort()
            let cache = try sandbox.persistentFolder("rpc-cache")
            update(.starting, "starting ggml-rpc-server: preparing its launch on port \(port)")
            launch = try await sandbox.prepareLaunch(
                executable,
                ["-H", "127.0.0.1", "-p", String(port), "-t", String(threads), "-c"],
                environment: ["LLAMA_CACHE": cache, "GGML_RPC_NO_RDMA": "1"]
            )
        } catch {
            update(.failed, "cannot start ggml-rpc-server: \(error)")
            logger.error("pool member failed", metadata: ["error": "\(error)"])
            return
        }
        defer { launch.finish() }
        let logPath = (logDirectory as NSString).appendingPathComponent("rpc-\(port).log")
        defer { try? FileManager.default.removeItem(atPath: logPath) }
        let process: Subprocess
        do {
            update(.starting, "starting ggml-rpc-server: spawning it")
            process = try await launch.spawn(loggingTo: logPath)
        } catch {
            update(.failed, "cannot start ggml-rpc-server: \(error)")
            return
        }
        logger.info("pool member starting", metadata: ["node.engine.port": "\(port)", "node.engine.pid": "\(process.pid)"])
        update(.starting, "starting ggml-rpc-server: waiting for it to listen on port \(port)")
        await withTaskCancellationHandler {
            if await Self.waitUntilListening(port: port, process: process, timeout: startTimeout) {
                update(.ready, nil, port: port)
                logger.info("pool member ready", metadata: ["node.engine.port": "\(port)"])
            } else if !Task.isCancelled, !process.hasExited {
                // Never listening is a failure too: say so, rather than stay "starting" until the gateway gives up.
                update(.failed, "ggml-rpc-server did not listen on port \(port) within \(startTimeout)")
                process.signal(SIGKILL)
            }
            let status = await process.waitForExit()
            if !Task.isCancelled {
                let output = EngineSupervisorService.tail(of: try? String(contentsOfFile: logPath, encoding: .utf8))
                update(.failed, "ggml-rpc-server exited with status \(status): \(output)")
                logger.warning("pool member exited", metadata: ["status": "\(status)"])
            }
        } onCancel: {
            // SIGKILL: it holds nothing to save, and a frozen (stopped) process would never act on SIGTERM.
            process.signal(SIGKILL)
        }
        await process.stop(grace: .seconds(3))
    }

    /// Connects to the port until the server accepts, it exits, or `timeout` passes.
    static func waitUntilListening(port: Int, process: Subprocess, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, !process.hasExited, !Task.isCancelled {
            if let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(1))
                .connect(host: "127.0.0.1", port: port).get()
            {
                try? await channel.close()
                return true
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}
