import Foundation
import HearthCore
import Logging
import ServiceLifecycle
import Synchronization

/// Keeps this gateway's row in the shared `gateways` table: every `interval`, and at once when its nodes change (a
/// model ready or gone), at most once a second. Other gateways and operators read the table (`GET /api/gateways`) to
/// know which gateways are alive, where nodes reach them, and what each can serve. A clean stop removes the row; a
/// crashed gateway's row ages out after `GatewayDirectoryService.ttl(for:)`.
///
/// Runs only where a directory means something: on a shared (PostgreSQL) database, or in a network of gateways.
struct GatewayDirectoryService: Service {
    let database: GatewayDatabase
    let registry: NodeRegistry
    let id: NodeID
    let network: NodeID
    /// Where nodes dial this gateway; known once the mesh listens.
    let mesh: MeshAddress
    let interval: Duration
    let logger: Logger

    /// The mesh's advertised address, filled in when it starts listening.
    final class MeshAddress: Sendable {
        private let value = Mutex<String?>(nil)
        let changes = ChangeSignal()
        var current: String? { value.withLock { $0 } }
        func set(_ address: String) {
            value.withLock { $0 = address }
            changes.notify()
        }
    }

    /// A row older than three heartbeats is a gateway that went away.
    static func ttl(for interval: Duration) -> Double { 3 * interval.seconds }

    func run() async throws {
        let startedAt = Date().timeIntervalSince1970
        let changes = registry.changes
        let mesh = self.mesh
        // Typed as throwing: inferred from its body the closure throws nothing, and the compiler both wants the `try`
        // (the parameter's type throws) and warns that nothing in it throws.
        try? await cancelWhenGracefulShutdown { () async throws -> Void in
            await mesh.changes.wait(until: .now + .seconds(86400 * 365)) { mesh.current != nil }
        }
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            let seen = changes.generation
            if let address = mesh.current {
                let nodes = registry.routableNodes()
                // Loaded or not (a node loads a model on its first request), as `/v1/models` lists them, under their ids
                // and the aliases their owners gave; not failed ones.
                let models = Set(
                    nodes.flatMap { node in node.models.filter { $0.state != .failed }.flatMap { [$0.id.rawValue] + $0.aliases.map(\.rawValue) } }
                )
                do {
                    try await database.heartbeat(
                        GatewayRecord(
                            id: id.rawValue,
                            network: network.rawValue,
                            mesh: address,
                            models: models.sorted(),
                            nodes: nodes.count,
                            heartbeatAt: Date().timeIntervalSince1970,
                            startedAt: startedAt
                        )
                    )
                } catch {
                    logger.warning("could not write this gateway's heartbeat", metadata: ["error": "\(error)"])
                }
            }
            let wake = ContinuousClock.now + interval
            try? await cancelWhenGracefulShutdown {
                // At most once a second, however often nodes change.
                try await Task.sleep(for: .seconds(1))
                await changes.wait(until: wake) { changes.generation != seen }
            }
        }
        try? await database.removeGateway(id.rawValue)
    }
}
