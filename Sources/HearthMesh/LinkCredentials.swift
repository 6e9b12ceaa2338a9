import Crypto
import Foundation
package import HearthCore
package import NIOSSL
import SwiftASN1
import X509

/// The TLS credentials of one end of a link: a self-signed Ed25519 certificate over the identity key.
///
/// Nothing in the certificate but its public key matters (and, for a gateway of a network, the network's word that
/// it belongs, in an extension of ours): each side pins the other's key or network, and the TLS 1.3 handshake proves
/// that the peer holds the matching private key.
package struct LinkCredentials: Sendable {
    let certificate: NIOSSLCertificate
    let privateKey: NIOSSLPrivateKey
    /// The identity these credentials prove.
    package let id: NodeID

    /// The network `identity` belongs to, if any.
    let membership: NetworkMembership?

    /// Makes a certificate for `identity`, valid from an hour ago for ten years, carrying `membership` if given.
    /// - Throws: when swift-certificates or BoringSSL refuse the key, which a valid Ed25519 key never causes.
    package init(identity: IdentityKey, membership: NetworkMembership? = nil) throws {
        let key = Certificate.PrivateKey(identity.privateKey)
        let name = try DistinguishedName { CommonName("hearth-\(identity.nodeID.short)") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: key.publicKey,
            notValidBefore: now - 3600,
            notValidAfter: now + 10 * 365 * 86400,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ed25519,
            extensions: try Certificate.Extensions(
                membership.map { [Certificate.Extension(oid: Self.membershipOID, critical: false, value: ArraySlice($0.encoded))] } ?? []
            ),
            issuerPrivateKey: key
        )
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        self.certificate = try NIOSSLCertificate(bytes: serializer.serializedBytes, format: .der)
        self.privateKey = try NIOSSLPrivateKey(bytes: try key.serializeAsPEM().derBytes, format: .der)
        self.id = identity.nodeID
        self.membership = membership
    }

    /// The extension carrying a gateway's `NetworkMembership`. A private arc: only Hearth peers read it, and only
    /// from each other's link certificates.
    static let membershipOID: ASN1ObjectIdentifier = [1, 3, 6, 1, 4, 1, 59_999, 72, 1]

    /// The network membership a peer's certificate carries, unchecked (`NetworkMembership.proves` checks it).
    package static func membership(of certificate: NIOSSLCertificate) -> NetworkMembership? {
        guard let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der),
            let value = parsed.extensions[oid: membershipOID]?.value
        else { return nil }
        return NetworkMembership(encoded: Data(value))
    }

    /// The identity a peer's certificate proves: the NodeID of its Ed25519 key, or `nil` for any other kind of key.
    static func peerID(of certificate: NIOSSLCertificate) -> NodeID? {
        guard let spki = try? certificate.extractPublicKey().toSPKIBytes(),
            let raw = IdentityKey.publicKey(fromSPKI: spki)
        else { return nil }
        return NodeID(publicKey: raw)
    }
}
