import Foundation
import HearthCore
import HearthGateway
import HearthTesting
import Testing

/// Whatever a node writes in its messages, it is registered as the key its handshake proved.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct MeshIdentityTests {
    @Test func aNodeIsRegisteredUnderItsProvenKeyWhateverItsMessagesSay() async throws {
        let victim = NodeID.random()
        let impostor = IdentityKey.generate()
        try await InProcessMesh.with(label: "mesh-identity") { mesh in
            // Every message claims the victim's identity and account.
            let router = try InProcessMesh.standInRouter(
                report: InProcessMesh.report(model: ModelID("impostor:q8_0")!),
                extraHello: #","nodeID":"\#(victim.rawValue)""#,
                extraReport: ["nodeID": .string(victim.rawValue), "account": .string(victim.rawValue)]
            )
            mesh.join(key: impostor, router: router)
            let announcements = try await mesh.waitForNodes(1)
            #expect(announcements.map(\.nodeID) == [impostor.nodeID])
            #expect(announcements.first?.account == nil)
            #expect(!mesh.gateway.registry.routableNodes().contains { $0.id == victim })
        }
    }
}
