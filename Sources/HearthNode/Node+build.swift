import Foundation
package import HearthCore
import HearthMesh
import HearthWeb
package import Hummingbird
import HummingbirdCore
package import Logging
import NIOCore
package import ServiceLifecycle

/// A built node: its services in start order, and handles for tests and `hearth up`.
package struct Node: Sendable {
    package let identity: NodeIdentity
    package let engines: [EngineHandle]
    /// Engine supervisors first, then the owner's dashboard, then the gateway link. Shut down in reverse: the link
    /// drains (the node says it is draining and finishes its requests) before the dashboard and the engines stop.
    package let services: [any Service]
    /// Where the dashboard's control token is (`control.token` in the data folder).
    let controlTokenPath: String
    /// How the engines are confined, or why they cannot be (then the node serves nothing).
    package let sandbox: EngineSandboxReport
}

/// Builds a node: identity, one supervised engine per catalog model (loaded at start while they fit in the memory
/// limit, the rest on demand), and the link to the gateway that carries the gateway's requests. The node opens no
/// listening socket.
/// - Parameters:
///   - configuration: models, limits and the gateway to join.
///   - logger: the node's logger.
///   - onDashboardRunning: called with the dashboard's port on 127.0.0.1 once it listens.
/// - Throws: `NodeStartError` when the configuration cannot work (no model, a model the catalog does not pin, a
///   missing file that cannot be downloaded), `KeyFileError` when the
///   identity cannot be read or the control token not written.
package func buildNode(
    configuration: NodeConfiguration,
    logger: Logger,
    onDashboardRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> Node {
    guard !configuration.models.isEmpty || configuration.pool != nil || configuration.backend?.models.isEmpty == false else {
        throw NodeStartError("no model to serve: give --model, use the default model, or map the models of your own server with --backend-model")
    }
    guard configuration.join != nil || configuration.joinProvider != nil else {
        throw NodeStartError("no gateway to join: give --join host:port#gateway-id")
    }
    try KeyFile.createPrivateDirectory(configuration.dataDirectory)
    let identity = try NodeIdentity.loadOrCreate(in: configuration.dataDirectory)
    if let certificate = configuration.deviceCertificate {
        do {
            try certificate.check(for: identity.id)
        } catch {
            throw NodeStartError("the device certificate does not fit this node (\(identity.id.short)): \(error.description)")
        }
    }
    var configuration = configuration
    for spec in configuration.models {
        // Only what the catalog pins, under exactly its id and hash, is ever loaded.
        guard let entry = configuration.catalog[spec.id] else {
            throw NodeStartError("\(spec.id) is not in the catalog; only catalog models can be served (`hearth catalog list`)")
        }
        guard entry.sha256 == spec.sha256 else {
            let pinned = entry.sha256.map { "pins \($0.hex)" } ?? "does not pin it"
            throw NodeStartError("the catalog \(pinned) for \(spec.id), not \(spec.sha256.hex); refusing to serve it")
        }
        guard configuration.prepare != nil || spec.entry != nil || FileManager.default.fileExists(atPath: spec.path) else {
            throw NodeStartError("model file \(spec.path) does not exist")
        }
    }
    // The owner's memory limit; without one, four fifths of what is available now.
    let budget = configuration.limits.memoryBytes ?? HardwareProbe.probe(diskPath: configuration.dataDirectory).memoryAvailableBytes / 5 * 4
    configuration.limits.memoryBytes = budget
    if let share = configuration.pool?.memoryShare {
        configuration.pool?.memoryBytes = UInt64(Double(budget) * share)
        configuration.pool?.memoryShare = nil
    }
    if let pool = configuration.pool, pool.memoryBytes >= budget {
        throw NodeStartError("--pool-memory (\(pool.memoryBytes.binaryBytes)) must be less than the node's memory limit (\(budget.binaryBytes))")
    }
    if configuration.pool != nil {
        // An engine that is there says which build it is; one still to be provisioned will be the pinned build; a
        // node with neither is a build of its own.
        if let build = await EngineBuild.probe(llamaServer: configuration.llamaServerPath) {
            configuration.pool?.build = build
        } else if configuration.prepare == nil {
            configuration.pool?.build = EngineBuild(llamaCpp: 0)
        }
        if let build = configuration.pool?.build, build != .current {
            logger.warning(
                "this node's engine is not the pinned build: it is pooled only with nodes of the same build",
                metadata: ["node.engine.build": "\(build)", "node.engine.pinned": "\(EngineBuild.current)"]
            )
        }
    }
    // What the node lends to pools is not its own engines' to use.
    let engineBudget = budget - (configuration.pool?.memoryBytes ?? 0)
    let initial = EngineHost.initialLoad(configuration.models, budget: engineBudget)
    let changes = ChangeSignal()
    let managed = zip(configuration.models, initial).map { EngineHandle(spec: $0, wanted: $1, changes: changes) }
    let external = try backendEngines(configuration, changes: changes)
    let engines = managed + external
    let host = EngineHost(engines: engines, budget: engineBudget, backendSlots: configuration.limits.parallelSlots)
    var stores: [String: ModelStore] = [:]
    for spec in configuration.models where spec.entry != nil {
        let directory = (spec.path as NSString).deletingLastPathComponent
        if stores[directory] == nil { stores[directory] = ModelStore(directory: directory) }
    }
    if configuration.pool != nil, stores.isEmpty, let directory = configuration.modelsDirectory {
        stores[directory] = ModelStore(directory: directory)
    }
    let preparation = Preparation(configuration.prepare)
    var logger = logger
    logger[metadataKey: "node.id"] = "\(identity.id.short)"
    let sandbox = await EngineSandbox.prepare(
        settings: configuration.sandbox,
        limits: configuration.limits,
        dataDirectory: configuration.dataDirectory,
        name: identity.id.short,
        logger: logger
    )
    let load = NodeLoad()
    let pools = configuration.pool.map {
        PoolWorker(
            settings: $0,
            node: identity.id,
            configuration: configuration,
            sandbox: sandbox,
            store: stores.values.first,
            changes: changes,
            logger: logger
        )
    }
    let status = NodeStatus(configuration: configuration, engines: engines, load: load, changes: changes, sandbox: sandbox.report, pools: pools)
    let router = Router()
    let join = configuration.join
    let receipts = ReceiptSigner(
        key: identity.key,
        account: configuration.deviceCertificate?.account,
        gateway: { status.gatewayID ?? join?.gatewayID },
        log: status.receipts
    )
    let inFlight = InFlightRequests()
    EngineProxyController(
        host: host,
        load: load,
        maxBodyBytes: 8 << 20,
        receipts: receipts,
        inFlight: inFlight,
        pools: pools,
        embeddingsForAll: configuration.embeddings
    ).addRoutes(to: router)
    PoolController(worker: pools).addRoutes(to: router)
    LinkController(status: status, inFlight: inFlight).addRoutes(to: router)
    var supervisors: [any Service] = managed.map {
        EngineSupervisorService(
            handle: $0,
            configuration: configuration,
            preparation: preparation,
            store: stores[($0.spec.path as NSString).deletingLastPathComponent],
            sandbox: sandbox,
            logger: logger
        )
    }
    if let backend = configuration.backend, !external.isEmpty {
        supervisors.append(BackendMonitorService(settings: backend, engines: external, lookNow: host.backendLooks, logger: logger))
    }
    let link = GatewayLinkService(
        identity: identity,
        configuration: configuration,
        status: status,
        responder: linkResponder(router.buildResponder(), logger: logger),
        streams: LinkByteStreams(services: configuration.tunnelServices, pools: pools),
        inFlight: inFlight,
        logger: logger
    )
    let controlTokenPath = (configuration.dataDirectory as NSString).appendingPathComponent("control.token")
    var dashboard: [any Service] = []
    if let port = configuration.dashboardPort {
        let token = "hc_" + Hex.random(bytes: 24)
        try KeyFile.writeOwnerOnly(Data((token + "\n").utf8), to: controlTokenPath)
        let dashboardRouter = Router()
        DashboardController(status: status, token: token).addRoutes(to: dashboardRouter)
        dashboard.append(
            WebServer(
                router: dashboardRouter,
                configuration: .init(address: .hostname("127.0.0.1", port: port), serverName: "hearth-node"),
                onServerRunning: { await onDashboardRunning($0.localAddress?.port ?? 0) },
                logger: logger
            )
        )
    }
    // Pool work stops after the link has drained and before the engines do.
    let poolWork: [any Service] = pools.map { [PoolWorkService(worker: $0)] } ?? []
    // The idle code release only waits, and gives back code pages once no engine request has come for a while.
    let idleRelease: [any Service] = configuration.releasesIdleCode ? [IdleCodeRelease(activity: load.activity)] : []
    return Node(
        identity: identity,
        engines: engines,
        services: idleRelease + supervisors + poolWork + dashboard + [link],
        controlTokenPath: controlTokenPath,
        sandbox: sandbox.report
    )
}

/// The handles of the owner's server's models (`--backend-model`), each under a pinned catalog id; they take no
/// memory of the node's and are reported loading until the first look at the server.
/// - Throws: `NodeStartError` for a mapping to a model the catalog does not pin, or one the node also runs itself.
private func backendEngines(_ configuration: NodeConfiguration, changes: ChangeSignal) throws -> [EngineHandle] {
    guard let backend = configuration.backend else { return [] }
    var seen: Set<ModelID> = Set(configuration.models.map(\.id))
    return try backend.models.map { mapping in
        let named = "--backend-model \(mapping.name)=\(mapping.id)"
        guard let entry = configuration.catalog.resolve(mapping.id) ?? configuration.catalog.resolve(mapping.id, includeUnpinned: true) else {
            throw NodeStartError("\(named): '\(mapping.id)' is not in the catalog; `hearth catalog list` shows what is")
        }
        guard let sha256 = entry.sha256 else {
            throw NodeStartError(
                "\(named): \(entry.id) is not pinned in the catalog, so no node may serve it; an operator pins it with `hearth catalog pin`"
            )
        }
        guard seen.insert(entry.id).inserted else {
            throw NodeStartError("\(entry.id) is served twice (by --model or another --backend-model); map it once")
        }
        let handle = EngineHandle(
            spec: ModelSpec(id: entry.id, path: "", sha256: sha256, entry: entry),
            changes: changes,
            backend: BackendModel(baseURL: backend.baseURL, name: mapping.name, apiKey: backend.apiKey, trust: backend.trust)
        )
        handle.update { $0.detail = "asking the owner's server" }
        return handle
    }
}

/// Stops every rpc-server and head of the node when it shuts down.
struct PoolWorkService: Service {
    let worker: PoolWorker

    func run() async throws {
        try? await gracefulShutdown()
        await worker.dropAll()
    }
}

/// A gateway link serving `router` instead of a node's engines: for programs that stand in for a node, such as the
/// benchmark's fake node. `router` must answer the gateway's hello and report polls (`/link/v1/hello`,
/// `/link/v1/report`) itself; the configuration's tunnel services are served beside it.
package func buildLinkService(
    router: Router<BasicRequestContext>,
    identity: NodeIdentity,
    configuration: NodeConfiguration,
    logger: Logger
) -> any Service {
    GatewayLinkService(
        identity: identity,
        configuration: configuration,
        status: NodeStatus(configuration: configuration, engines: [], load: NodeLoad()),
        responder: linkResponder(router.buildResponder(), logger: logger),
        streams: LinkByteStreams(services: configuration.tunnelServices, pools: nil),
        inFlight: InFlightRequests(),
        logger: logger
    )
}

/// Serves the gateway's streams with the node's router (`LinkResponder`: a stream the gateway resets cancels its work).
private func linkResponder(_ responder: RouterResponder<BasicRequestContext>, logger: Logger) -> HTTP1Channel {
    LinkResponder.channel(
        respond: { request, channel in
            try await LinkStream.$channel.withValue(channel) {
                try await responder.respond(to: request, context: BasicRequestContext(source: .init(channel: channel, logger: logger)))
            }
        },
        failure: { error in EngineProxyController.error(APIFailure(.server, "The node failed: \(error)")) },
        // An engine call is relayed on its stream's loop (every await in it resumes on the thread that carries its
        // bytes); control routes, which may start processes or read files, stay in the pool.
        onItsEventLoop: { request in EngineProxyController.isEngineCall(request) }
    )
}

/// The link stream a request came on, for a route that writes its answer to it on its event loop (`EngineRelay`);
/// `nil` outside a link (a test's router).
enum LinkStream {
    @TaskLocal static var channel: (any Channel)?
}
