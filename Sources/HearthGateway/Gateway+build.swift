import AsyncHTTPClient
public import HearthCore
public import Hummingbird
public import Logging
import NIOCore
public import ServiceLifecycle

/// A built gateway: its application (a `Service`) and the parts tests and `hearth up` look at.
public struct Gateway: Sendable {
    public let application: Application<RouterResponder<GatewayRequestContext>>
    public let registry: NodeRegistry
    public let database: GatewayDatabase
    public let metrics: GatewayMetrics
    /// The services to run, in start order: background loops, then the API server (which shuts down first).
    public let services: [any Service]
}

/// Builds the gateway: database, registry, routes and background services.
/// - Parameters:
///   - configuration: where to listen and which limits to apply.
///   - transport: how to reach nodes; plain HTTP by default.
///   - logger: the gateway's logger.
///   - onServerRunning: called with the bound port once the server listens (port 0 picks one).
/// - Throws: when the database cannot be opened or migrated.
public func buildGateway(
    configuration: GatewayConfiguration,
    transport: (any NodeTransport)? = nil,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> Gateway {
    let database = try GatewayDatabase.open(directory: configuration.dataDirectory)
    try await database.migrate()
    let registry = NodeRegistry(ttl: configuration.nodeTTL)
    let metrics = GatewayMetrics()
    // The gateway owns an HTTP client only when it reaches nodes over HTTP itself; its service shuts it down.
    var clientServices: [any Service] = []
    let nodeTransport: any NodeTransport
    if let transport {
        nodeTransport = transport
    } else {
        let nodeClient = HTTPClientService.makeNodeClient(connectTimeout: configuration.nodeConnectTimeout)
        clientServices.append(HTTPClientService(client: nodeClient))
        nodeTransport = HTTPNodeTransport(client: nodeClient)
    }
    let dispatcher = Dispatcher(
        registry: registry,
        transport: nodeTransport,
        maxAttempts: configuration.maxAttempts,
        retryAfterSeconds: configuration.retryAfterSeconds
    )
    let pipeline = CompletionPipeline(
        dispatcher: dispatcher,
        database: database,
        metrics: metrics,
        maxBodyBytes: configuration.maxBodyBytes,
        limits: configuration.limits
    )

    let auth = AuthService(database: database, challengeTTL: configuration.challengeTTL, tokenTTL: configuration.tokenTTL)
    let router = Router(context: GatewayRequestContext.self)
    // Outermost first: request id and metrics, rate limiting, then errors rendered as the OpenAI envelope.
    router.add(middleware: EdgeMiddleware(metrics: metrics))
    router.add(
        middleware: RateLimitMiddleware(
            limiter: RateLimiter(perMinute: configuration.rateLimitPerMinute),
            trustedProxies: configuration.trustedProxies
        )
    )
    router.add(middleware: OpenAIErrorMiddleware())
    router.add(middleware: AuthMiddleware(auth: auth, requireAuth: configuration.requireAuth))
    OperationsController(registry: registry, metrics: metrics).addRoutes(to: router)
    ModelsController(registry: registry).addRoutes(to: router)
    CompletionsController(pipeline: pipeline).addRoutes(to: router)
    OllamaController(pipeline: pipeline, registry: registry).addRoutes(to: router)
    AuthController(auth: auth, database: database, maxBodyBytes: configuration.maxBodyBytes).addRoutes(to: router)
    NodesController(registry: registry, maxBodyBytes: configuration.maxBodyBytes).addRoutes(to: router)

    let sweeper = RegistrySweeperService(registry: registry, metrics: metrics, interval: configuration.sweepInterval, logger: logger)
    let application = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "hearth"),
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
        logger: logger
    )
    return Gateway(
        application: application,
        registry: registry,
        database: database,
        metrics: metrics,
        services: clientServices + [sweeper, application]
    )
}
