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

    /// An idle node answers its long poll only when the hold ends; with a TTL shorter than the configured hold it
    /// must still never drop out of routing (it did: a 2 s TTL against a 5 s hold made nodes flap). The TTL leaves
    /// room for a loaded test machine: 2 s against a 10 s hold.
    @Test func anIdleNodeStaysRoutableWhenTheTTLIsShorterThanThePollHold() async throws {
        let node = IdentityKey.generate()
        let shortTTL: (inout GatewayConfiguration) -> Void = {
            $0.nodeTTL = .seconds(2)
            $0.linkPollInterval = .seconds(10)
        }
        try await InProcessMesh.with(label: "mesh-ttl", configure: shortTTL) { mesh in
            mesh.join(key: node, router: try InProcessMesh.standInRouter(report: InProcessMesh.report(model: ModelID("idle:q8_0")!)))
            _ = try await mesh.waitForNodes(1)
            var missing = 0
            for _ in 0..<30 {
                try await Task.sleep(for: .milliseconds(100))
                if !mesh.gateway.registry.routableNodes().contains(where: { $0.id == node.nodeID }) { missing += 1 }
            }
            #expect(missing == 0, "the idle node was out of routing in \(missing) of 30 samples")
        }
    }
}
