package import Foundation

/// A network's word that a gateway belongs to it: the network key's signature over the gateway's id.
///
/// The gateways of one network share a network key (`--network-key`); each signs its own membership with it and
/// shows it in its link certificate, so a node whose join string names the network (`…#net:<network id>`) accepts
/// any of its gateways and no other (docs/SCALE-OUT.md).
package struct NetworkMembership: Sendable, Equatable {
    /// The network key's raw Ed25519 public key (32 bytes).
    var networkKey: Data
    /// Its signature over `message(network:gateway:)`.
    var signature: Data

    var network: NodeID { NodeID(publicKey: networkKey) }

    package init(networkKey: Data, signature: Data) {
        self.networkKey = networkKey
        self.signature = signature
    }

    /// Signs `gateway`'s membership with the network key.
    package static func sign(gateway: NodeID, with networkKey: IdentityKey) throws -> NetworkMembership {
        NetworkMembership(
            networkKey: networkKey.publicKey,
            signature: try networkKey.sign(message(network: networkKey.nodeID, gateway: gateway))
        )
    }

    /// Whether this is the network `network`'s valid word for `gateway`.
    package func proves(gateway: NodeID, in network: NodeID) -> Bool {
        networkKey.count == 32 && self.network == network
            && IdentityKey.isValidSignature(signature, of: Self.message(network: network, gateway: gateway), by: networkKey)
    }

    /// What the network key signs: domain-separated from every other Hearth signature.
    package static func message(network: NodeID, gateway: NodeID) -> Data {
        Data("hearth-network-member-v1:\(network.rawValue):\(gateway.rawValue)".utf8)
    }

    /// The bytes carried in a certificate: the key, then the signature.
    package var encoded: Data { networkKey + signature }

    package init?(encoded: Data) {
        guard encoded.count == 96 else { return nil }
        self.init(networkKey: Data(encoded.prefix(32)), signature: Data(encoded.suffix(64)))
    }
}
