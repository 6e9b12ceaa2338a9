import Foundation
import HearthTesting
import Testing

@testable import HearthCore
@testable import HearthGateway

/// The gateway routes only to models whose id and hash the catalog pins, whatever a node reports.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct AllowlistTests {
    static func report(_ models: [(String, SHA256Digest)]) -> NodeReport {
        var report = InProcessMesh.report(model: DefaultModel.id)
        report.models = models.map { ServedModel(id: ModelID($0.0)!, sha256: $0.1, contextLength: 512, sizeBytes: 1, state: .ready) }
        return report
    }

    @Test func modelsOffTheAllowlistAreNeverRouted() async throws {
        let honest = IdentityKey.generate()
        let tampered = IdentityKey.generate()
        let otherHash = SHA256Digest(hex: String(repeating: "e", count: 64))!
        try await InProcessMesh.with(label: "allowlist") { mesh in
            mesh.join(key: honest, router: try InProcessMesh.standInRouter(report: Self.report([(DefaultModel.id.rawValue, DefaultModel.sha256)])))
            mesh.join(
                key: tampered,
                router: try InProcessMesh.standInRouter(
                    report: Self.report([(DefaultModel.id.rawValue, otherHash), ("rogue:q8_0", DefaultModel.sha256)])
                )
            )
            _ = try await mesh.waitForNodes(2)
            let nodes = mesh.gateway.registry.routableNodes()
            #expect(nodes.first { $0.id == honest.nodeID }?.models.map(\.id) == [DefaultModel.id])
            // Still linked and listed, but with nothing to route to.
            #expect(nodes.first { $0.id == tampered.nodeID }?.models == [])
            let ready = mesh.gateway.registry.readyModels()
            #expect(ready.map(\.model.id) == [DefaultModel.id])
            #expect(ready.first?.nodes == [honest.nodeID])
            #expect(RoutePlanner.plan(model: ModelID("rogue:q8_0")!, nodes: nodes) == .unknownModel)
        }
    }
}
