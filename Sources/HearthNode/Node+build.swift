import Foundation
public import HearthCore
public import Hummingbird
public import Logging
public import ServiceLifecycle

/// A built node: its services in start order, and handles for tests and `hearth up`.
public struct Node: Sendable {
    public let identity: NodeIdentity
    public let engines: [EngineHandle]
    /// Engine supervisors first, then the API server. Shut down in reverse: the API drains before engines stop.
    public let services: [any Service]
    /// Announces the node; list it after everything else so that, on shutdown, the node first says it is draining.
    public let heartbeat: any Service
}

/// Builds a node: identity, one supervised engine per model, the API the gateway calls, and the heartbeat.
/// - Parameters:
///   - configuration: models, limits, gateway and ports.
///   - logger: the node's logger.
///   - onServerRunning: called with the bound port of the node's API.
/// - Throws: `NodeStartError` when the configuration cannot work (no model, missing file, unreadable identity).
public func buildNode(
    configuration: NodeConfiguration,
    logger: Logger,
    onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }
) async throws -> Node {
    guard !configuration.models.isEmpty else { throw NodeStartError("no model to serve: give --model or use the default model") }
    try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
    let identity = try NodeIdentity.loadOrCreate(in: configuration.dataDirectory)
    let engines = try configuration.models.map { spec in
        guard configuration.prepare != nil || FileManager.default.fileExists(atPath: spec.path) else {
            throw NodeStartError("model file \(spec.path) does not exist")
        }
        return EngineHandle(spec: spec)
    }
    let preparation = Preparation(configuration.prepare)
    var logger = logger
    logger[metadataKey: "node.id"] = "\(identity.id.short)"
    let load = NodeLoad()
    let boundPort = BoundPort()
    let router = Router()
    EngineProxyController(engines: engines, load: load, maxBodyBytes: 8 << 20).addRoutes(to: router)
    let application = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "hearth-node"),
        onServerRunning: { channel in
            let port = channel.localAddress?.port ?? 0
            boundPort.set(port)
            await onServerRunning(port)
        },
        logger: logger
    )
    let supervisors: [any Service] = engines.map {
        EngineSupervisorService(handle: $0, configuration: configuration, preparation: preparation, logger: logger)
    }
    let heartbeat = HeartbeatService(
        node: identity,
        configuration: configuration,
        engines: engines,
        load: load,
        boundPort: boundPort,
        logger: logger
    )
    return Node(identity: identity, engines: engines, services: supervisors + [application], heartbeat: heartbeat)
}
