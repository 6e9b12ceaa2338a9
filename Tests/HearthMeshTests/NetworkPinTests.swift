import Foundation
import NIOCore
import NIOSSL
import Testing

@testable import HearthCore
@testable import HearthMesh

/// A node that joins a network (`…#net:<id>`) links to any gateway the network key certified, over real TLS, and to
/// no other: one without the network's word, one certified by another network, or one showing a word meant for
/// another gateway.
struct NetworkPinTests {
    let networkKey = IdentityKey.generate()
    let gatewayKey = IdentityKey.generate()
    let nodeKey = IdentityKey.generate()

    /// A gateway with `membership` in its certificate; the node dials it pinned to this network.
    func dial(membership: NetworkMembership?) async throws -> (node: any Channel, peer: EventLoopFuture<NodeID>, server: any Channel) {
        let credentials = try LinkCredentials(identity: gatewayKey, membership: membership)
        let server = try await LinkHarness.listen(tls: LinkTLS.configuration(credentials: credentials, role: .server), pin: .anyIdentity) { _ in }
        let node = try await LinkHarness.dial(
            port: server.localAddress!.port!,
            tls: LinkTLS.configuration(credentials: try LinkCredentials(identity: nodeKey), role: .client),
            pin: .network(networkKey.nodeID)
        )
        return (node.channel, node.peer, server)
    }

    @Test func aGatewayTheNetworkCertifiedIsAccepted() async throws {
        let membership = try NetworkMembership.sign(gateway: gatewayKey.nodeID, with: networkKey)
        let (node, peer, server) = try await dial(membership: membership)
        defer {
            node.close(promise: nil)
            server.close(promise: nil)
        }
        #expect(try await peer.get() == gatewayKey.nodeID, "the link proves the gateway's own key")
    }

    @Test(arguments: ["none", "another network", "another gateway", "flipped signature"])
    func anyOtherGatewayIsRefused(_ case: String) async throws {
        let membership: NetworkMembership? =
            switch `case` {
            case "none": nil
            case "another network": try NetworkMembership.sign(gateway: gatewayKey.nodeID, with: IdentityKey.generate())
            case "another gateway": try NetworkMembership.sign(gateway: IdentityKey.generate().nodeID, with: networkKey)
            default:
                try {
                    var word = try NetworkMembership.sign(gateway: gatewayKey.nodeID, with: networkKey)
                    word.signature[7] ^= 1
                    return word
                }()
            }
        let (node, peer, server) = try await dial(membership: membership)
        defer {
            node.close(promise: nil)
            server.close(promise: nil)
        }
        await #expect(throws: NIOSSLError.self) { try await peer.get() }
    }

    @Test func theMembershipSurvivesTheCertificateAndIsBoundToBothIds() throws {
        let membership = try NetworkMembership.sign(gateway: gatewayKey.nodeID, with: networkKey)
        let credentials = try LinkCredentials(identity: gatewayKey, membership: membership)
        #expect(LinkCredentials.membership(of: credentials.certificate) == membership)
        #expect(LinkCredentials.membership(of: try LinkCredentials(identity: gatewayKey).certificate) == nil)
        #expect(membership.proves(gateway: gatewayKey.nodeID, in: networkKey.nodeID))
        #expect(!membership.proves(gateway: nodeKey.nodeID, in: networkKey.nodeID))
        #expect(!membership.proves(gateway: gatewayKey.nodeID, in: nodeKey.nodeID))
        #expect(NetworkMembership(encoded: membership.encoded) == membership)
        #expect(NetworkMembership(encoded: membership.encoded.dropLast()) == nil)
    }
}
