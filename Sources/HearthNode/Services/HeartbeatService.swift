import AsyncHTTPClient
import Foundation
import HearthCore
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Announces the node to its gateway: at once, on every engine state change, and every heartbeat interval.
/// On shutdown it announces that the node is draining, so the gateway stops sending new work first.
///
/// It only reads shared state and does HTTP, so a model download or load never delays it.
struct HeartbeatService: Service {
    let node: NodeIdentity
    let configuration: NodeConfiguration
    let engines: [EngineHandle]
    let load: NodeLoad
    let boundPort: BoundPort
    let logger: Logger

    func run() async throws {
        let clock = ContinuousClock()
        var lastSent: [EngineState]?
        var lastSentAt = clock.now
        var reachable = true
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let states = engines.map(\.snapshot.state)
            if let announcement = announcement(draining: false),
                states != lastSent || clock.now - lastSentAt >= configuration.heartbeatInterval
            {
                let sent = await send(announcement)
                if sent != reachable {
                    if sent { logger.info("gateway reachable", metadata: ["node.gateway": "\(configuration.gatewayURL)"]) }
                    reachable = sent
                }
                if sent { lastSent = states }
                lastSentAt = clock.now
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(200)) }
        }
        if let announcement = announcement(draining: true) {
            _ = await send(announcement)
        }
    }

    /// The announcement as of now, once the node's API has a port.
    func announcement(draining: Bool) -> NodeAnnouncement? {
        guard let port = boundPort.value else { return nil }
        let endpoint = configuration.advertisedURL ?? "http://\(configuration.host):\(port)"
        let models = engines.map { engine in
            let snapshot = engine.snapshot
            return ServedModel(
                id: engine.spec.id,
                aliases: engine.spec.aliases,
                sha256: engine.spec.sha256,
                contextLength: configuration.limits.contextSize,
                sizeBytes: snapshot.sizeBytes,
                state: snapshot.state,
                detail: snapshot.detail
            )
        }
        return NodeAnnouncement(
            nodeID: node.id,
            name: configuration.name,
            endpoint: endpoint,
            hardware: HardwareProbe.probe(diskPath: configuration.dataDirectory),
            limits: configuration.limits,
            models: models,
            inFlight: load.inFlight,
            draining: draining,
            version: HearthVersion.current
        )
    }

    private func send(_ announcement: NodeAnnouncement) async -> Bool {
        do {
            let gateway = await configuration.gatewayURLProvider?() ?? configuration.gatewayURL
            var request = HTTPClientRequest(url: gateway + "/internal/v1/nodes/heartbeat")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(announcement)))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(3))
            _ = try? await response.body.collect(upTo: 1 << 16)
            guard response.status.code < 300 else {
                logger.warning("gateway refused heartbeat", metadata: ["http.response.status_code": "\(response.status.code)"])
                return false
            }
            return true
        } catch {
            logger.debug("heartbeat failed", metadata: ["error": "\(error)"])
            return false
        }
    }
}

/// The port the node's API listens on, known once the server runs.
final class BoundPort: Sendable {
    private let port = Mutex<Int?>(nil)
    var value: Int? { port.withLock { $0 } }
    func set(_ value: Int) { port.withLock { $0 = value } }
}
