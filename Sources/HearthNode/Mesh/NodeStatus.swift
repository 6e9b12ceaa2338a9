import Foundation
import HearthCore
import Synchronization

/// What the node reports over its link, and the link's own state: draining, and when the gateway last polled.
///
/// It only reads shared state, so a model download or load never delays a report.
final class NodeStatus: Sendable {
    let configuration: NodeConfiguration
    let engines: [EngineHandle]
    let load: NodeLoad
    /// Rung on every change a report shows (engine states, draining, pausing).
    let changes: ChangeSignal
    /// How engines are confined, for every report.
    let sandbox: EngineSandboxReport?
    /// The pool work, when the owner lends memory to pools.
    let pools: PoolWorker?
    /// Receipts signed since start, for the owner's dashboard.
    let receipts = ReceiptLog()
    private let gateway = Mutex<NodeID?>(nil)
    private let state = Mutex<
        (draining: Bool, drainingReported: Bool, lastPoll: ContinuousClock.Instant, refusal: LinkRefusal?, paused: Bool, linked: Bool)
    >((false, false, .now, nil, false, false))

    init(
        configuration: NodeConfiguration,
        engines: [EngineHandle],
        load: NodeLoad,
        changes: ChangeSignal = ChangeSignal(),
        sandbox: EngineSandboxReport? = nil,
        pools: PoolWorker? = nil
    ) {
        self.configuration = configuration
        self.engines = engines
        self.load = load
        self.changes = changes
        self.sandbox = sandbox
        self.pools = pools
    }

    var draining: Bool { state.withLock { $0.draining } }

    /// The owner paused the node from its dashboard: it reports draining, so the gateway sends no new work, but
    /// keeps its link.
    var paused: Bool { state.withLock { $0.paused } }

    func setPaused(_ paused: Bool) {
        state.withLock { $0.paused = paused }
        changes.notify()
    }

    /// Whether a gateway link is up now.
    var linked: Bool { state.withLock { $0.linked } }

    func setLinked(_ linked: Bool) {
        state.withLock { $0.linked = linked }
    }

    /// The gateway of the current (or last) link: the identity its handshake proved.
    var gatewayID: NodeID? { gateway.withLock { $0 } }

    func setGateway(_ id: NodeID) {
        gateway.withLock { $0 = id }
    }

    /// From now on the node takes no new work; the next report says so.
    func beginDraining() {
        state.withLock { $0.draining = true }
        changes.notify()
    }

    /// Records that the gateway just asked for a report: the link is alive.
    func polled() {
        state.withLock { $0.lastPoll = max($0.lastPoll, .now) }
    }

    /// Records a long poll the node will hold for `hold`: the gateway is waiting on the node meanwhile, so the link
    /// counts as alive until the hold ends.
    func polled(holding hold: Duration) {
        state.withLock { $0.lastPoll = max($0.lastPoll, .now + hold) }
    }

    /// Records that the gateway received `report`; once it has seen "draining", it sends no new work.
    func delivered(_ report: NodeReport) {
        if report.draining { state.withLock { $0.drainingReported = true } }
    }

    /// Whether the gateway has been told that the node drains.
    var drainingReported: Bool { state.withLock { $0.drainingReported } }

    /// The gateway said why it refuses this node; the link closes next.
    func refused(_ refusal: LinkRefusal) {
        state.withLock { $0.refusal = refusal }
        changes.notify()
    }

    /// Whether the gateway sent a refusal on this link.
    var hasRefusal: Bool { state.withLock { $0.refusal != nil } }

    /// Takes the refusal the gateway sent on the last link, if any.
    func takeRefusal() -> LinkRefusal? {
        state.withLock { state in
            defer { state.refusal = nil }
            return state.refusal
        }
    }

    /// What the node presents when a link comes up.
    var hello: LinkHello {
        LinkHello(deviceCertificate: configuration.deviceCertificate?.token, invite: configuration.invite, version: HearthVersion.current)
    }

    /// Since when the gateway has not polled.
    var sinceLastPoll: Duration { max(.zero, .now - lastPoll) }

    /// When the gateway last polled, or when the poll it is holding ends (then in the future).
    var lastPoll: ContinuousClock.Instant { state.withLock { $0.lastPoll } }

    /// The report as of now.
    func report() -> NodeReport {
        let models = engines.map { engine in
            let snapshot = engine.snapshot
            return ServedModel(
                id: engine.spec.id,
                aliases: engine.spec.aliases,
                sha256: engine.spec.sha256,
                contextLength: configuration.limits.contextSize,
                sizeBytes: snapshot.sizeBytes,
                state: snapshot.state,
                detail: snapshot.detail,
                embeddings: engine.spec.servesEmbeddings(forAll: configuration.embeddings) ? true : nil,
                backend: snapshot.backend
            )
        }
        let offer = pools?.offer()
        return NodeReport(
            name: configuration.name,
            hardware: HardwareProbe.probe(diskPath: configuration.dataDirectory),
            limits: configuration.limits,
            models: models + (pools?.servedModels() ?? []),
            inFlight: load.inFlight,
            draining: draining || paused,
            version: HearthVersion.current,
            sandbox: sandbox,
            pool: offer
        )
    }

    /// The revision of the current state, cheaper than a whole report.
    var revision: String {
        NodeReport.revision(
            models: engines.map { engine in
                let snapshot = engine.snapshot
                return ServedModel(
                    id: engine.spec.id,
                    sha256: engine.spec.sha256,
                    contextLength: 0,
                    sizeBytes: 0,
                    state: snapshot.state,
                    backend: snapshot.backend
                )
            }
                + (pools?.servedModels() ?? []),
            draining: draining || paused,
            pool: pools?.statuses ?? []
        )
    }
}
