import AsyncHTTPClient
import Foundation
import HearthCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// Runs one `llama-server` for one model while the node wants it loaded: fetches the file when it is missing
/// (`ModelStore`), verifies its hash once, starts the engine on a free loopback port, waits for `/health`, restarts
/// it with backoff when it crashes, stops it when the host evicts it or the node shuts down, and otherwise waits in
/// standby.
struct EngineSupervisorService: Service {
    let handle: EngineHandle
    let configuration: NodeConfiguration
    let preparation: Preparation
    var store: ModelStore?
    let sandbox: EngineSandbox
    let logger: Logger
    /// Whether a crashed engine is started again. A pool's head is not: its gateway plans again first.
    var restarts = true
    /// Variables the engine gets beside the sandbox's own.
    var environment: [String: String] = [:]

    init(
        handle: EngineHandle,
        configuration: NodeConfiguration,
        preparation: Preparation,
        store: ModelStore? = nil,
        sandbox: EngineSandbox,
        logger: Logger,
        restarts: Bool = true,
        environment: [String: String] = [:]
    ) {
        self.handle = handle
        self.configuration = configuration
        self.preparation = preparation
        self.store = store
        self.sandbox = sandbox
        self.logger = logger
        self.restarts = restarts
        self.environment = environment
    }

    private enum Event: Sendable {
        case exited(Int32)
        case shutdown
        case unload
    }

    func run() async throws {
        var logger = logger
        logger[metadataKey: "node.model"] = "\(handle.spec.id)"
        do {
            try await preparation.run()
        } catch is CancellationError {
            return
        } catch {
            fail("preparation failed: \(error)", logger: logger)
            handle.failPermanently("preparation failed: \(error)")
            return try await gracefulShutdown()
        }
        // A missing protection is no crash to retry: the node serves nothing until the owner fixes it or opts out.
        if !sandbox.report.blockers.isEmpty {
            fail("refused: \(sandbox.report.summary)", logger: logger)
            handle.failPermanently("refused: \(sandbox.report.summary)")
            return try await gracefulShutdown()
        }
        // The loop does what `EngineSupervision` says, and tells it what happened.
        var supervision = EngineSupervision(restarts: restarts)
        var stopping: Bool { Task.isShuttingDownGracefully || Task.isCancelled }
        var step = supervision.next(.turn(wanted: handle.wanted, stopping: stopping))
        while true {
            switch step {
            case .stop:
                return
            case .newTurn:
                step = supervision.next(.turn(wanted: handle.wanted, stopping: stopping))
            case .standby:
                if handle.permanentFailure == nil {
                    handle.update {
                        $0.state = .standby
                        $0.port = nil
                    }
                }
                await cancelWhenGracefulShutdown { await handle.waitUntil(wanted: true) }
                step = .newTurn
            case .checkFile:
                step = supervision.next(.fileChecked(ready: await fileIsReady(logger: logger)))
            case .start:
                await handle.waitForPredecessors(limit: .seconds(15))
                let outcome = try await runOnce(logger: logger)
                step = supervision.next(.ran(outcome, wanted: handle.wanted, stopping: stopping))
            case .restart(let delay, let failure):
                if let failure { fail(failure, logger: logger) }
                logger.warning("engine stopped; restarting", metadata: ["node.engine.restart_in_s": "\(delay)"])
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(delay)) }
                step = supervision.next(.waited)
            case .giveUp(let failure):
                if let failure {
                    fail(failure, logger: logger)
                } else if handle.snapshot.state != .failed {
                    fail("engine exited", logger: logger)
                }
                return
            }
        }
    }

    /// Downloads the file when it is missing and checks its hash. A file whose hash is not the pinned one is never
    /// loaded: the engine stays failed until the node restarts. A failed download leaves the engine in standby, so
    /// the next request tries again.
    private func fileIsReady(logger: Logger) async -> Bool {
        let model = handle.spec
        if !FileManager.default.fileExists(atPath: model.path) {
            guard let entry = model.entry, let store, store.path(for: model.sha256) == model.path else {
                fail("model file \(model.path) does not exist", logger: logger)
                handle.failPermanently("model file \(model.path) does not exist")
                return false
            }
            do {
                try await download(entry, into: store, logger: logger)
            } catch {
                let detail = "the download failed: \(error)"
                logger.error("model download failed", metadata: ["node.engine.detail": "\(detail)"])
                handle.update { $0.detail = detail }
                handle.want(false)
                return false
            }
        }
        let size = ModelStore.fileSize(atPath: model.path)
        handle.update {
            $0.state = .loading
            $0.sizeBytes = size
            $0.detail = "verifying sha256"
        }
        let digest: HearthCore.SHA256Digest
        do {
            digest = try await FileDigest.sha256(ofFileAt: model.path)
        } catch {
            fail("cannot read \(model.path): \(error)", logger: logger)
            handle.failPermanently("cannot read \(model.path)")
            return false
        }
        guard digest == model.sha256 else {
            // A tampered or wrong file is never loaded; the node keeps reporting the failure until it is stopped.
            let detail = "sha256 of \(model.path) is \(digest), expected \(model.sha256); refusing to load it"
            fail(detail, logger: logger)
            handle.failPermanently(detail)
            return false
        }
        return true
    }

    /// Fetches the model into the store, reporting progress in the engine's detail and every tenth in the log.
    private func download(_ entry: CatalogEntry, into store: ModelStore, logger: Logger) async throws {
        handle.update {
            $0.state = .loading
            $0.detail = "downloading"
        }
        logger.info("downloading model", metadata: ["node.model.size": "\(entry.sizeBytes.binaryBytes)"])
        let tenths = Mutex(-1)
        let handle = self.handle
        _ = try await store.fetch(entry) { received, total in
            let percent = total > 0 ? Int(received * 100 / total) : 0
            handle.update { $0.detail = "downloading \(percent)% (\(received.binaryBytes) of \(total.binaryBytes))" }
            if tenths.withLock({ last in
                defer { last = max(last, percent / 10) }
                return percent / 10 > last
            }) {
                logger.info("downloading model", metadata: ["node.model.progress": "\(percent)%"])
            }
        }
        logger.info("model downloaded and verified")
    }

    /// Starts the engine once and returns when it has exited, saying how the run went.
    private func runOnce(logger: Logger) async throws -> EngineSupervision.Outcome {
        let port = try await Self.freeLoopbackPort()
        let logPath = (configuration.dataDirectory as NSString).appendingPathComponent("engine-\(port).log")
        handle.update {
            $0.state = .loading
            $0.port = port
            $0.slots = configuration.limits.parallelSlots
            $0.starts += 1
        }
        let process: Subprocess
        let launch: EngineSandbox.Launch
        let memoryKillsBefore = sandbox.memoryKills
        do {
            launch = try await sandbox.prepareLaunch(configuration.llamaServerPath, arguments(port: port), environment: environment)
        } catch {
            fail("cannot start \(configuration.llamaServerPath): \(error)", logger: logger)
            return .unhealthy
        }
        defer { launch.finish() }
        do {
            process = try await launch.spawn(loggingTo: logPath)
        } catch {
            fail("cannot start \(configuration.llamaServerPath): \(error)", logger: logger)
            return .unhealthy
        }
        handle.update { $0.pid = process.pid }
        logger.info("engine starting", metadata: ["node.engine.port": "\(port)", "node.engine.pid": "\(process.pid)"])
        defer { try? FileManager.default.removeItem(atPath: logPath) }

        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
        Task {
            continuation.yield(.exited(await process.waitForExit()))
        }
        // The host evicts the engine by no longer wanting it.
        let handle = self.handle
        let unloadWatch = Task {
            await handle.waitUntil(wanted: false)
            if !Task.isCancelled { continuation.yield(.unload) }
        }
        defer { unloadWatch.cancel() }
        let healthy = await waitUntilHealthy(port: port, process: process)
        if healthy {
            handle.update {
                $0.state = .ready
                $0.detail = nil
            }
            logger.info("engine ready", metadata: ["node.engine.port": "\(port)"])
        } else if !process.hasExited {
            // Stopped while starting is no failure of the engine's.
            if !Task.isShuttingDownGracefully && !Task.isCancelled {
                fail("engine did not become healthy within \(configuration.engineStartTimeout)", logger: logger)
            }
            await process.stop(grace: .seconds(2))
        }
        var portTaken = false
        await withGracefulShutdownHandler {
            for await event in events {
                switch event {
                case .exited(let status):
                    let log = try? String(contentsOfFile: logPath, encoding: .utf8)
                    if !healthy && log?.contains("couldn't bind") == true {
                        portTaken = true
                        logger.info("engine port was taken; starting again on another", metadata: ["node.engine.port": "\(port)"])
                    } else if let killed = sandbox.explainExit(status: status, killsBefore: memoryKillsBefore) {
                        fail(killed, logger: logger)
                    } else if !Task.isShuttingDownGracefully && handle.wanted {
                        fail("engine exited with status \(status): \(Self.tail(of: log))", logger: logger)
                    }
                    return
                case .shutdown:
                    logger.info("stopping engine")
                    await process.stop(grace: .seconds(5))
                case .unload:
                    logger.info("unloading engine (evicted)")
                    await process.stop(grace: .seconds(5))
                }
            }
        } onGracefulShutdown: {
            continuation.yield(.shutdown)
        }
        // A cancelled supervisor (a pool's head being dropped) ends the loop above without an event: stop it here.
        if !process.hasExited { await process.stop(grace: .seconds(5)) }
        handle.update {
            $0.pid = nil
            $0.port = nil
        }
        return portTaken ? .portTaken : (healthy ? .healthy : .unhealthy)
    }

    private func arguments(port: Int) -> [String] {
        let limits = configuration.limits
        var arguments = [
            "--model", handle.spec.path, "--host", "127.0.0.1", "--port", String(port),
            "--ctx-size", String(limits.contextSize * limits.parallelSlots), "--parallel", String(limits.parallelSlots),
            "--threads", String(limits.threads), "--alias", handle.spec.id.rawValue, "--no-webui",
            // llama-server keeps finished prompts' KV in a host cache of up to 8 GiB by default: memory the sizer does
            // not charge, which would take an engine past its sandbox limit after enough distinct prompts. Each slot
            // still reuses its own cached prefix.
            "--cache-ram", "0",
            // Its HTTP server serves each open connection on a thread of a fixed pool (by default its slots and two),
            // and the node keeps up to its slots connections idle beside as many requests (`EngineAddress
            // .keepsConnection`): room for both, and two for the node's looks.
            "--threads-http", String(2 * limits.parallelSlots + 2),
        ]
        if handle.spec.servesEmbeddings(forAll: configuration.embeddings) {
            // Mean pooling: right for the catalog's embedding models, and what a chat model's embeddings are taken
            // as here (its own last-token pooling would need a model trained for it). The same engine still completes.
            arguments += ["--embeddings", "--pooling", "mean"]
        }
        arguments += configuration.extraEngineArguments
        return arguments
    }

    /// Polls `/health` until it answers 200, the process exits, or the start timeout passes.
    private func waitUntilHealthy(port: Int, process: Subprocess) async -> Bool {
        let deadline = ContinuousClock.now + configuration.engineStartTimeout
        while ContinuousClock.now < deadline, !process.hasExited, !Task.isShuttingDownGracefully, !Task.isCancelled {
            var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/health")
            request.method = .GET
            if let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(1)), response.status == .ok {
                return true
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    private func fail(_ detail: String, logger: Logger) {
        handle.update {
            $0.state = .failed
            $0.detail = detail
        }
        logger.error("engine failed", metadata: ["node.engine.detail": "\(detail)"])
    }

    /// The last lines of the engine's log, to explain a crash.
    static func tail(of log: String?) -> String {
        guard let log else { return "(no log)" }
        return log.split(separator: "\n").suffix(3).joined(separator: " | ")
    }

    /// A port that was free a moment ago on 127.0.0.1.
    static func freeLoopbackPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }
}
