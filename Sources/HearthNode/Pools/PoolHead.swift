import AsyncHTTPClient
import Foundation
import HearthCore
import HearthMesh
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1
import NIOPosix
import Synchronization

/// A pool's head on this node: `llama-server --rpc` over one loopback port per member, each of which the gateway
/// joins to that member's rpc-server through the links (`PeerPort`). The engine is an `EngineHandle` like the
/// node's own, so the proxy, the receipts and the report treat it the same; it is never restarted here, because a
/// head that exits has lost a member and the gateway must plan again.
final class PoolHead: Sendable {
    let assignment: PoolAssignment
    let engine: EngineHandle
    let peers: [PeerPort]
    private let task = Mutex<Task<Void, Never>?>(nil)
    private let stall = Mutex<(busySince: ContinuousClock.Instant?, lastDecoded: Int, seconds: Int)>((nil, -1, 0))
    private let changes: ChangeSignal

    init(assignment: PoolAssignment, spec: ModelSpec, peers: [PeerPort], changes: ChangeSignal) {
        self.assignment = assignment
        self.peers = peers
        self.changes = changes
        engine = EngineHandle(spec: spec, wanted: true, changes: changes)
    }

    var workStatus: PoolWorkStatus {
        let snapshot = engine.snapshot
        let state: PoolWorkStatus.State =
            switch snapshot.state {
            case .ready: .ready
            case .failed: .failed
            case .loading, .standby: .starting
            }
        let stalled = stall.withLock { $0.seconds }
        return PoolWorkStatus(
            pool: assignment.pool,
            epoch: assignment.epoch,
            role: .head,
            state: state,
            detail: snapshot.detail,
            stalledSeconds: stalled > 0 ? stalled : nil
        )
    }

    /// Runs the engine with the plan's split, and watches it for stalls while it serves.
    func start(configuration: NodeConfiguration, store: ModelStore?, sandbox: EngineSandbox, threads: Int, logger: Logger) {
        let plan = assignment.plan
        let endpoints = peers.map { "127.0.0.1:\($0.port)" }
        let configuration = configuration.with {
            $0.limits.threads = threads
            $0.limits.contextSize = plan.context
            $0.limits.parallelSlots = plan.slots
            $0.extraEngineArguments += plan.engineArguments(endpoints: endpoints)
        }
        var logger = logger
        logger[metadataKey: "pool.id"] = "\(assignment.pool)"
        let supervisor = EngineSupervisorService(
            handle: engine,
            configuration: configuration,
            preparation: Preparation(nil),
            store: store,
            sandbox: sandbox,
            logger: logger,
            restarts: false,
            environment: ["GGML_RPC_NO_RDMA": "1"]
        )
        let work = Task {
            // The watcher ends with the engine.
            let watcher = Task { await self.watchForStalls() }
            await withTaskCancellationHandler {
                try? await supervisor.run()
            } onCancel: {
                watcher.cancel()
            }
            watcher.cancel()
        }
        task.withLock { $0 = work }
    }

    /// Stops the engine and closes the member ports.
    func stop() async {
        let work = task.withLock { $0 }
        work?.cancel()
        await work?.value
        for peer in peers { peer.close() }
    }

    /// Every 2 s while the engine is ready: a busy slot whose decoded count has not moved, or a `/slots` that does
    /// not answer at all (the engine's loop is stuck in a blocking read from a silent member), counts as a stall
    /// since the last progress seen. The report carries the seconds; the gateway decides.
    private func watchForStalls() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(2))
            let snapshot = engine.snapshot
            if snapshot.state == .failed { return }
            guard snapshot.state == .ready, let port = snapshot.port else { continue }
            let progress = await Self.slotProgress(port: port)
            let now = ContinuousClock.now
            let (before, after) = stall.withLock { stall -> (Int, Int) in
                let before = stall.seconds
                switch progress {
                case .idle:
                    stall = (nil, -1, 0)
                case .busy(let decoded) where decoded != stall.lastDecoded:
                    stall = (now, decoded, 0)
                case .busy, .unanswered:
                    let since = stall.busySince ?? now
                    stall.busySince = since
                    stall.seconds = Int((now - since).components.seconds)
                }
                return (before, stall.seconds)
            }
            if (before > 0) != (after > 0) { changes.notify() }
        }
    }

    enum SlotProgress: Equatable {
        case idle
        case busy(decoded: Int)
        case unanswered
    }

    /// The summed `n_decoded` and `n_prompt_tokens_processed` of the busy slots from `GET /slots`.
    static func slotProgress(port: Int) async -> SlotProgress {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/slots")
        request.headers.add(name: "connection", value: "close")
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(3)), response.status == .ok,
            let body = try? await response.body.collect(upTo: 16 << 20),
            let slots = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [[String: Any]]
        else { return .unanswered }
        var busy = false
        var decoded = 0
        for slot in slots where slot["is_processing"] as? Bool == true {
            busy = true
            // Prompt processing moves too: a long prompt is no stall while its batches go through.
            let next = (slot["next_token"] as? [[String: Any]])?.first
            decoded += ((next?["n_decoded"] as? Int) ?? 0) + ((slot["n_prompt_tokens_processed"] as? Int) ?? 0)
        }
        return busy ? .busy(decoded: decoded) : .idle
    }
}

/// A loopback port the head's engine connects to for one member. Each connection waits until the gateway claims
/// it with a peer stream (`POST /link/v1/pool/{id}/peer/{index}`), which then carries its bytes to the member's
/// rpc-server. llama.cpp connects more than once (a first connection asks for the devices, then it reconnects).
final class PeerPort: Sendable {
    typealias Connection = SplicedConnection
    private struct Queue {
        var connections: [Connection] = []
        var waiters: [(id: Int, continuation: CheckedContinuation<Connection?, Never>)] = []
        var nextID = 0
        var closed = false
    }

    private let server: NIOAsyncChannel<Connection, Never>
    private let queue = Mutex(Queue())
    private let accepting = Mutex<Task<Void, Never>?>(nil)
    let port: Int

    /// Listens on a loopback port; on `eventLoop` when given (the link's), so that each connection of the engine is
    /// on the same thread as the link stream it is spliced to, and no message of the pool's hops between threads.
    init(on eventLoop: (any EventLoop)? = nil) async throws {
        server = try await ServerBootstrap(group: eventLoop ?? MultiThreadedEventLoopGroup.singleton.next())
            .serverChannelOption(ChannelOptions.backlog, value: 4)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(host: "127.0.0.1", port: 0) { channel in
                channel.eventLoop.makeCompletedFuture { try SplicedConnection.prepare(channel) }
            }
        port = server.channel.localAddress?.port ?? 0
        let server = self.server
        let task = Task { [weak self] in
            try? await server.executeThenClose { inbound in
                for try await connection in inbound { self?.hand(connection) }
            }
            self?.close()
        }
        accepting.withLock { $0 = task }
    }

    private func hand(_ connection: Connection) {
        let waiter = queue.withLock { queue -> CheckedContinuation<Connection?, Never>? in
            guard !queue.waiters.isEmpty else {
                queue.connections.append(connection)
                return nil
            }
            return queue.waiters.removeFirst().continuation
        }
        waiter?.resume(returning: connection)
    }

    /// The next connection of the engine, or `nil` once the port is closed or the caller is cancelled.
    func next() async -> Connection? {
        let id = queue.withLock { queue in
            queue.nextID += 1
            return queue.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = queue.withLock { queue -> Connection?? in
                    if queue.closed || Task.isCancelled { return .some(nil) }
                    if !queue.connections.isEmpty { return .some(queue.connections.removeFirst()) }
                    queue.waiters.append((id, continuation))
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = queue.withLock { queue -> CheckedContinuation<Connection?, Never>? in
                guard let index = queue.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return queue.waiters.remove(at: index).continuation
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Stops listening; waiting claims get `nil`, and connections nobody claimed are closed.
    func close() {
        server.channel.close(promise: nil)
        accepting.withLock { $0 }?.cancel()
        let (waiters, unclaimed) = queue.withLock { queue in
            defer {
                queue.closed = true
                queue.waiters = []
                queue.connections = []
            }
            return (queue.waiters, queue.connections)
        }
        for waiter in waiters { waiter.continuation.resume(returning: nil) }
        for connection in unclaimed { connection.close() }
    }
}
