import Foundation
import HearthCore
import Logging
import NIOCore
import Synchronization

/// What the owner lends to pools (`--pool-memory`); `nil` in the configuration lends nothing.
package struct PoolSettings: Sendable, Equatable {
    /// Memory for pool work, taken out of the node's `--memory`.
    var memoryBytes: UInt64
    /// Or this share of the node's memory limit, resolved when the node is built.
    var memoryShare: Double?
    /// Threads of each rpc-server or head.
    var threads: Int
    /// The `ggml-rpc-server` binary.
    var rpcServerPath: String
    /// Longest wait for an rpc-server to listen before it counts as failed.
    var startTimeout: Duration = .seconds(30)
    /// The engine build this node runs (`EngineBuild.probe`, when the node is built).
    var build: EngineBuild = .current

    package init(memoryBytes: UInt64, threads: Int, rpcServerPath: String) {
        self.memoryBytes = memoryBytes
        self.threads = threads
        self.rpcServerPath = rpcServerPath
    }

    package init(memoryShare: Double, threads: Int, rpcServerPath: String) {
        self.init(memoryBytes: 0, threads: threads, rpcServerPath: rpcServerPath)
        self.memoryShare = memoryShare
    }
}

/// `--pool-memory` as given: a size, or a share of the node's memory.
package enum PoolMemory: Sendable, Equatable {
    case bytes(UInt64)
    case share(Double)
}

/// Why the node refuses a pool assignment.
struct PoolRefusal: Error {
    var failure: APIFailure
    init(_ status: APIFailure.Kind, _ message: String, code: String) { failure = APIFailure(status, message, code: code) }
}

/// The node's pool work: one rpc-server per pool it is a member of, one head per pool it heads, started and
/// stopped only on its gateway's word (nobody else can open a stream on the link), and checked against what the
/// owner lends before anything starts.
final class PoolWorker: Sendable {
    enum Work: Sendable {
        case member(RPCMember)
        case head(PoolHead)

        var assignment: PoolAssignment {
            switch self {
            case .member(let member): member.assignment
            case .head(let head): head.assignment
            }
        }

        var status: PoolWorkStatus {
            switch self {
            case .member(let member): member.workStatus
            case .head(let head): head.workStatus
            }
        }

        var memoryBytes: UInt64 {
            switch self {
            case .member(let member): member.share.memoryBytes
            case .head(let head): head.assignment.plan.head.memoryBytes
            }
        }

        func stop() async {
            switch self {
            case .member(let member): await member.stop()
            case .head(let head): await head.stop()
            }
        }
    }

    let settings: PoolSettings
    let node: NodeID
    let configuration: NodeConfiguration
    let sandbox: EngineSandbox
    let store: ModelStore?
    let changes: ChangeSignal
    let logger: Logger
    private let work = Mutex<[PoolID: Work]>([:])
    /// Serialises starts and stops, so an assignment that replaces older work starts once that work is gone.
    private let turns = TurnLock()

    init(
        settings: PoolSettings,
        node: NodeID,
        configuration: NodeConfiguration,
        sandbox: EngineSandbox,
        store: ModelStore?,
        changes: ChangeSignal,
        logger: Logger
    ) {
        self.settings = settings
        self.node = node
        self.configuration = configuration
        self.sandbox = sandbox
        self.store = store
        self.changes = changes
        self.logger = logger
    }

    /// The offer for the report: memory, build, whether a head is possible, files held, and the work now.
    func offer() -> PoolOffer {
        var files: [SHA256Digest] = []
        if let store {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: store.directory)) ?? []
            files = names.compactMap { $0.hasSuffix(".gguf") ? SHA256Digest(hex: String($0.dropLast(5))) : nil }.sorted { $0.hex < $1.hex }
        }
        return PoolOffer(
            memoryBytes: settings.memoryBytes,
            threads: settings.threads,
            build: settings.build,
            canHead: store != nil,
            files: Array(files.prefix(NodeReport.Bound.models)),
            work: statuses
        )
    }

    /// The pool work now, without the files: the report's revision is computed often and needs only this.
    var statuses: [PoolWorkStatus] {
        work.withLock { Array($0.values) }.map(\.status).sorted { ($0.pool, $0.role.rawValue) < ($1.pool, $1.role.rawValue) }
    }

    /// The models this node's heads serve, for the report: routable like its own engines, under their pool's id.
    func servedModels() -> [ServedModel] {
        work.withLock { Array($0.values) }.compactMap { work -> ServedModel? in
            guard case .head(let head) = work else { return nil }
            let snapshot = head.engine.snapshot
            let plan = head.assignment.plan
            return ServedModel(
                id: plan.model,
                sha256: plan.sha256,
                contextLength: plan.context,
                sizeBytes: snapshot.sizeBytes,
                state: snapshot.state == .standby ? .loading : snapshot.state,
                detail: snapshot.detail,
                pool: head.assignment.pool
            )
        }.sorted { ($0.pool?.rawValue ?? "") < ($1.pool?.rawValue ?? "") }
    }

    /// The head engine of `pool`, for the proxy, and the shares its receipts name.
    func head(of pool: PoolID) -> (engine: EngineHandle, shares: PoolShares)? {
        guard case .head(let head) = work.withLock({ $0[pool] }) else { return nil }
        return (head.engine, PoolShares(pool: pool, epoch: head.assignment.epoch, plan: head.assignment.plan))
    }

    /// The port of this node's ready rpc-server for `pool`.
    func memberPort(of pool: PoolID) -> Int? {
        guard case .member(let member) = work.withLock({ $0[pool] }) else { return nil }
        return member.readyPort
    }

    /// The head's loopback port for member `index` of `pool`.
    func peerPort(of pool: PoolID, index: Int) -> PeerPort? {
        guard case .head(let head) = work.withLock({ $0[pool] }), head.peers.indices.contains(index) else { return nil }
        return head.peers[index]
    }

    /// Starts this node's part of `assignment`, replacing older work of the same pool.
    /// - Throws: `PoolRefusal` when the plan does not fit this node: another build, not in it, over the memory lent,
    ///   a model the catalog does not pin, or older than the work it would replace.
    func assign(_ assignment: PoolAssignment) async throws(PoolRefusal) {
        let plan = assignment.plan
        guard plan.build == settings.build else {
            throw PoolRefusal(.conflict, "This node runs engine \(settings.build), the plan \(plan.build).", code: "engine_build_mismatch")
        }
        guard let share = plan.share(of: node) else {
            throw PoolRefusal(.permission, "This node is not in the plan of \(assignment.pool).", code: "not_in_plan")
        }
        guard let entry = configuration.catalog[plan.model], entry.sha256 == plan.sha256 else {
            throw PoolRefusal(.permission, "The catalog does not pin \(plan.model) with sha256 \(plan.sha256).", code: "model_not_pinned")
        }
        try await turns.run { () throws(PoolRefusal) in
            let existing = work.withLock { $0[assignment.pool] }
            if let existing {
                if existing.assignment == assignment { return }
                guard existing.assignment.epoch < assignment.epoch else {
                    throw PoolRefusal(.conflict, "Pool \(assignment.pool) already runs a newer plan here.", code: "stale_plan")
                }
            }
            let others = work.withLock { $0.filter { $0.key != assignment.pool }.values.reduce(UInt64(0)) { $0.addingSaturated($1.memoryBytes) } }
            guard others.addingSaturated(share.memoryBytes) <= settings.memoryBytes else {
                throw PoolRefusal(
                    .conflict,
                    "The share needs \(share.memoryBytes.binaryBytes); this node lends \(settings.memoryBytes.binaryBytes), \(others.binaryBytes) of it in use.",
                    code: "over_lent_memory"
                )
            }
            if let existing { await existing.stop() }
            let next: Work
            if plan.head.node == node {
                guard let spec = ModelSpec(entry: entry, directory: store?.directory ?? configuration.dataDirectory, limits: configuration.limits)
                else {
                    throw PoolRefusal(.permission, "\(plan.model) is not pinned.", code: "model_not_pinned")
                }
                var peers: [PeerPort] = []
                for _ in plan.members {
                    // On the link's event loop: the gateway's streams for the members come on that link.
                    guard let peer = try? await PeerPort(on: LinkStream.channel?.eventLoop) else {
                        for peer in peers { peer.close() }
                        throw PoolRefusal(.server, "Cannot listen on a loopback port for the head.", code: "head_failed")
                    }
                    peers.append(peer)
                }
                let head = PoolHead(assignment: assignment, spec: spec, peers: peers, changes: changes)
                head.start(configuration: configuration, store: store, sandbox: sandbox, threads: settings.threads, logger: logger)
                next = .head(head)
            } else {
                let member = RPCMember(assignment: assignment, share: share, changes: changes)
                member.start(
                    executable: settings.rpcServerPath,
                    threads: settings.threads,
                    sandbox: sandbox,
                    logDirectory: configuration.dataDirectory,
                    startTimeout: settings.startTimeout,
                    logger: logger
                )
                next = .member(member)
            }
            work.withLock { $0[assignment.pool] = next }
            logger.info(
                "pool work started",
                metadata: ["pool.id": "\(assignment.pool)", "pool.epoch": "\(assignment.epoch)", "pool.layers": "\(share.layers)"]
            )
            changes.notify()
        }
    }

    /// Drops the work of `pool` (only if its epoch is `epoch` or older, when given: a stop that arrives after the
    /// next plan's assignment leaves that one running); returns whether there was any.
    @discardableResult
    func drop(_ pool: PoolID, through epoch: Int? = nil) async -> Bool {
        await turns.run { () throws(Never) in
            let existing = work.withLock { work -> Work? in
                guard let existing = work[pool], epoch.map({ existing.assignment.epoch <= $0 }) ?? true else { return nil }
                return work.removeValue(forKey: pool)
            }
            guard let existing else { return false }
            await existing.stop()
            logger.info("pool work stopped", metadata: ["pool.id": "\(pool)"])
            changes.notify()
            return true
        }
    }

    /// Drops everything (the node shuts down or its link to the gateway that planned the work is gone).
    func dropAll() async {
        for pool in work.withLock({ Array($0.keys) }) { await drop(pool) }
    }
}

/// Runs one operation at a time, in arrival order, across suspensions.
actor TurnLock {
    private var busy = false
    private var queue: [CheckedContinuation<Void, Never>] = []

    func run<T: Sendable, E: Error>(_ operation: @Sendable () async throws(E) -> T) async throws(E) -> T {
        if busy {
            await withCheckedContinuation { queue.append($0) }
        }
        busy = true
        defer {
            if queue.isEmpty { busy = false } else { queue.removeFirst().resume() }
        }
        return try await operation()
    }
}
