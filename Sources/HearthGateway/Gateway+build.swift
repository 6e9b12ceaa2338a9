import Foundation
package import HearthCore
import HearthMesh
package import HearthWeb
import Hummingbird
import HummingbirdCore
package import Logging
import NIOCore
package import ServiceLifecycle

/// A built gateway: its application (a `Service`) and the parts tests and `hearth up` look at.
package struct Gateway: Sendable {
    package let application: WebServer<GatewayResponder>
    package let registry: NodeRegistry
    package let database: GatewayDatabase
    package let metrics: GatewayMetrics
    /// The gateway's identity, which nodes pin: the NodeID of `gateway.key` in its data folder.
    package let id: NodeID
    /// The nodes' links, when the gateway runs its mesh.
    package let links: NodeLinks?
    /// The pools, when the gateway runs its mesh.
    package let pools: PoolReconciler?
    /// The services to run, in start order: background loops, the mesh, then the API server. Shutdown runs in
    /// reverse: the API finishes its requests while the links that carry them are still up.
    package let services: [any Service]
    /// Every route the API serves, as (method, path template): tests walk them all.
    package let routes: [(method: String, path: String)]
    /// The metering of answers already sent, run beside their connections.
    let settlements: Settlements
    /// The API connections open from each client address.
    package let connections: ConnectionCounter

    /// Returns once every answer sent so far is metered (its usage row, ledger entry and metrics): a client has its
    /// answer before that (for tests, which look at the metering).
    package func settled() async {
        await settlements.drained()
    }
}

/// Builds the gateway: identity, database, registry, routes, the mesh nodes dial, and background services.
/// - Parameters:
///   - configuration: where to listen and which limits to apply.
///   - transport: how to reach nodes. `nil` (production) runs the mesh and sends requests over node links;
///     tests of the gateway alone pass a fake and get no mesh.
///   - logger: the gateway's logger.
///   - onServerRunning: called with the bound port once the API listens (port 0 picks one).
///   - onMeshListening: called with the bound mesh port once nodes can dial it.
/// - Throws: when the identity or the database cannot be opened.
package func buildGateway(
    configuration: GatewayConfiguration,
    transport: (any NodeTransport)? = nil,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in },
    onMeshListening: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> Gateway {
    let identity = try GatewayIdentity.loadOrCreate(in: configuration.dataDirectory)
    var database = try await GatewayDatabase.open(url: configuration.database, directory: configuration.dataDirectory, logger: logger)
    database.gatewayID = identity.nodeID.rawValue
    try await database.migrate()
    try await database.nameUnnamedChain()
    let cutOff = try await database.recoverCutOffRequests()
    if cutOff > 0 {
        logger.warning("the last run stopped while serving; recorded its requests as cut off", metadata: ["requests": "\(cutOff)"])
    }
    let registry = NodeRegistry(ttl: configuration.nodeTTL, routesUnverifiedBackends: configuration.allowUnverifiedBackends)
    let metrics = GatewayMetrics()
    var meshServices: [any Service] = []
    let network = configuration.networkKey?.nodeID ?? identity.nodeID
    let meshAddress = GatewayDirectoryService.MeshAddress()
    let advertised =
        configuration.advertiseHost
        ?? (["0.0.0.0", "::"].contains(configuration.meshHost) ? ProcessInfo.processInfo.hostName : configuration.meshHost)
    let nodeTransport: any NodeTransport
    var links: NodeLinks?
    let credentials = try LinkCredentials(
        identity: identity,
        membership: try configuration.networkKey.map { try NetworkMembership.sign(gateway: identity.nodeID, with: $0) }
    )
    // The links other gateways of the network dialed to this one (docs/SCALE-OUT.md, "Forwarding"): this gateway
    // forwards a request to a peer on the link that peer dialed, as it sends one to a node on the node's link.
    let peers = configuration.networkKey == nil ? nil : NodeLinks()
    if let transport {
        nodeTransport = transport
    } else {
        let nodeLinks = NodeLinks()
        meshServices.append(
            MeshListenerService(
                configuration: configuration,
                credentials: credentials,
                links: nodeLinks,
                registry: registry,
                admission: Admission(
                    gatewayKey: identity.publicKey,
                    networkKey: configuration.networkKey?.publicKey,
                    mode: configuration.network,
                    requireDeviceCertificate: configuration.requireDeviceCertificate,
                    database: database,
                    newNodes: RateLimiter(capacity: configuration.newNodesPerAddress, period: configuration.newNodePeriod)
                ),
                network: configuration.networkKey?.nodeID,
                peers: peers,
                logger: logger,
                onListening: { port in
                    meshAddress.set(JoinAddress.Endpoint(host: advertised, port: port).description)
                    await onMeshListening(port)
                }
            )
        )
        nodeTransport = nodeLinks
        links = nodeLinks
    }
    let liveLinks = links
    // Gateways sharing a database, or of one network, keep a directory of each other; a lone gateway writes nothing.
    if links != nil, configuration.database != nil || configuration.networkKey != nil {
        meshServices.append(
            GatewayDirectoryService(
                database: database,
                registry: registry,
                id: identity.nodeID,
                network: network,
                mesh: meshAddress,
                interval: configuration.directoryInterval,
                logger: logger
            )
        )
    }
    // Pools need the mesh: their members and heads are reached over the links.
    let pools = links.map {
        PoolReconciler(
            registry: registry,
            links: $0,
            catalog: configuration.catalog,
            policy: configuration.pools,
            metrics: metrics,
            database: database,
            logger: logger
        )
    }
    // Before the API listens: a request in the first moments must find the stored pools warming, not be refused.
    await pools?.restore()
    let dispatcher = Dispatcher(
        registry: registry,
        transport: nodeTransport,
        maxAttempts: configuration.maxAttempts,
        retryAfterSeconds: configuration.retryAfterSeconds,
        catalog: configuration.catalog,
        pools: pools
    )
    let quotas = QuotaBook(reciprocity: configuration.reciprocity, database: database)
    let pipeline = CompletionPipeline(
        dispatcher: dispatcher,
        database: database,
        gatewayKey: identity,
        quotas: quotas,
        metrics: metrics,
        maxBodyBytes: configuration.maxBodyBytes,
        limits: configuration.limits,
        maxContinuations: configuration.maxContinuations,
        spotChecker: SpotChecker(policy: configuration.spotChecks, dispatcher: dispatcher, database: database, metrics: metrics, logger: logger),
        degradeByDefault: configuration.allowDegrade
    )

    let auth = AuthService(database: database, challengeTTL: configuration.challengeTTL, tokenTTL: configuration.tokenTTL)
    // HEAD answers as GET without the body.
    let router = Router(context: GatewayRequestContext.self, options: .autoGenerateHeadEndpoints)
    // Outermost first: request id and metrics, the browser guard (Host, Origin, CORS), rate limiting, then errors
    // rendered as the API's envelope, then the caller. All of them see the canonical path (`GatewayResponder`).
    let activity = Activity()
    router.add(middleware: EdgeMiddleware(metrics: metrics, activity: activity))
    router.add(
        middleware: BrowserGuardMiddleware(
            policy: BrowserPolicy(
                bindHost: configuration.host,
                allowedHosts: configuration.allowedHosts,
                allowedOrigins: configuration.allowedOrigins
            )
        )
    )
    router.add(
        middleware: RateLimitMiddleware(
            limiter: RateLimiter(perMinute: configuration.rateLimitPerMinute),
            trustedProxies: configuration.trustedProxies
        )
    )
    router.add(middleware: OpenAIErrorMiddleware())
    router.add(middleware: AuthMiddleware(auth: auth, requireAuth: configuration.requireAuth))
    if let peers {
        router.add(
            middleware: PeerForwardMiddleware(
                peers: peers,
                registry: registry,
                catalog: configuration.catalog,
                database: database,
                network: network,
                gateway: identity.nodeID,
                ttl: GatewayDirectoryService.ttl(for: configuration.directoryInterval),
                maxBodyBytes: configuration.maxBodyBytes,
                retryAfterSeconds: configuration.retryAfterSeconds
            )
        )
    }
    OperationsController(registry: registry, metrics: metrics).addRoutes(to: router)
    ModelsController(registry: registry, catalog: configuration.catalog).addRoutes(to: router)
    CompletionsController(pipeline: pipeline).addRoutes(to: router)
    OllamaController(pipeline: pipeline, registry: registry).addRoutes(to: router)
    EmbeddingsController(pipeline: pipeline).addRoutes(to: router)
    AuthController(auth: auth, database: database, maxBodyBytes: configuration.maxBodyBytes).addRoutes(to: router)
    NodesController(registry: registry).addRoutes(to: router)
    PoolsController(pools: pools, operators: configuration.operators.union([identity.nodeID])).addRoutes(to: router)
    CatalogController(catalog: configuration.catalog, registry: registry, defaultContext: configuration.pools.context).addRoutes(to: router)
    LedgerController(database: database, gatewayKey: identity).addRoutes(to: router)
    ReciprocityController(quotas: quotas).addRoutes(to: router)
    DevicesController(database: database, links: liveLinks, registry: registry).addRoutes(to: router)
    ActivityController(database: database).addRoutes(to: router)
    GatewaysController(
        database: database,
        gateway: identity.nodeID,
        network: configuration.networkKey?.nodeID,
        ttl: GatewayDirectoryService.ttl(for: configuration.directoryInterval)
    ).addRoutes(to: router)
    // The pages people use (HearthWeb). They need no login to load: they call the API above with the browser's own.
    WebRoutes(
        pages: ["/": "chat.html", "/network": "network.html", "/account": "account.html"],
        files: ["hearth.css", "icon.svg", "common.js", "markdown.js", "chat.js", "charts.js", "cbor.js", "ledger.js", "network.js", "account.js"]
    ).add(to: router)

    let sweeper = RegistrySweeperService(registry: registry, metrics: metrics, interval: configuration.sweepInterval, logger: logger)
    let connections = ConnectionCounter(limitPerAddress: configuration.maxConnectionsPerAddress, exempt: configuration.trustedProxies)
    let headerTimeout = TimeAmount(configuration.headerTimeout)
    let responder = GatewayResponder(router: router.buildResponder(), metrics: metrics)
    // Serves what the network's other gateways forward, over the links this gateway dials to them.
    let dialer = peers.map { _ in
        PeerDialerService(
            database: database,
            id: identity.nodeID,
            network: network,
            credentials: credentials,
            responder: responder,
            interval: configuration.directoryInterval,
            logger: logger
        )
    }
    let application = WebServer(
        responder: responder,
        // Each client connection runs on its socket's event loop (`EventLoopChildChannel`).
        server: .http1OnEventLoops(
            configuration: HTTP1Channel.Configuration(
                additionalChannelHandlers: [
                    ConnectionGuardHandler(counter: connections, headerTimeout: headerTimeout, logger: logger),
                    ResponseHeadFlushHandler(),
                ],
                idleTimeout: TimeAmount(configuration.idleTimeout)
            )
        ),
        // A burst of clients (a classroom opening the chat at once) waits in the kernel's queue instead of being turned
        // away: Hummingbird's default of 256 reset most of 1,000 streams opened within a second (`bench/`).
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "hearth", backlog: 4096),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
    return Gateway(
        application: application,
        registry: registry,
        database: database,
        metrics: metrics,
        id: identity.nodeID,
        links: links,
        pools: pools,
        // The reconciler starts after the mesh (it talks over the links) and stops before it (its stops are sent
        // while the links are up). The API server stops once its requests are metered.
        // The idle code release first: it only waits, and gives back code pages once no API request has come for a while.
        services: [IdleCodeRelease(activity: activity), sweeper] + meshServices + (pools.map { [$0] } ?? []) + (dialer.map { [$0] } ?? [])
            + [SettlingServer(server: application, settlements: pipeline.settlements)],
        routes: router.routes.map { ($0.method.rawValue, $0.path.description) },
        settlements: pipeline.settlements,
        connections: connections
    )
}
