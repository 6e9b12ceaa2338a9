import Crypto
import Foundation
import HearthCore

extension FuzzTarget {
    /// Deterministic CBOR: whatever decodes must encode back to exactly the same bytes (one value, one encoding).
    static let cbor = FuzzTarget(name: "cbor", summary: "deterministic CBOR decoder (RFC 8949 §4.2.1)") { bytes in
        guard let value = try? CBOR(decoding: bytes) else { return nil }
        guard let again = try? value.encoded() else { return "an accepted item has no encoding" }
        return again == bytes ? nil : "accepted a non-deterministic encoding"
    }

    /// COSE_Sign1: an accepted message survives re-encoding, and checking its signature never traps, whatever the
    /// key id's length.
    static let cose = FuzzTarget(name: "cose", summary: "COSE_Sign1 envelope (RFC 9052) and its EdDSA check") { bytes in
        guard let message = try? COSESign1(decoding: bytes) else { return nil }
        guard let encoded = try? message.encoded(), let again = try? COSESign1(decoding: encoded), again == message else {
            return "re-encoding changed the message"
        }
        if message.isValid(publicKey: Data(message.keyID ?? [])), message.keyID?.count != 32 {
            return "a signature verified under a key id that is not an Ed25519 key"
        }
        _ = message.isValid(publicKey: FuzzKeys.node.publicKey)
        return nil
    }

    /// Receipts, as a node's trailer carries them: a COSE_Sign1 whose payload is a receipt, or a bare payload. An
    /// accepted receipt survives a round trip through its CBOR form.
    static let receipt = FuzzTarget(name: "receipt", summary: "signed receipt (COSE_Sign1 over a CBOR receipt)") { bytes in
        var payload = bytes
        if let message = try? COSESign1(decoding: bytes) {
            payload = message.payload
            if let keyID = message.keyID, keyID.count == 32 {
                let node = NodeID(publicKey: Data(keyID))
                if let receipt = try? Receipt.verified(message, from: node), receipt.node != node {
                    return "a receipt verified for another node than its signer"
                }
            }
            if (try? Receipt.verified(message, from: FuzzKeys.node.nodeID)) != nil, message.keyID != Array(FuzzKeys.node.publicKey) {
                return "a receipt verified for a node that did not sign it"
            }
        }
        guard let item = try? CBOR(decoding: payload), let receipt = try? Receipt(cbor: item) else { return nil }
        guard (try? Receipt(cbor: receipt.cbor)) == receipt else { return "a receipt changed through its CBOR form" }
        return nil
    }

    /// Signed tokens (device certificates, invites) and join strings, as text from a file, a flag or the wire: an
    /// accepted token reads back the same from its own encoding, and checking it never traps.
    static let token = FuzzTarget(name: "token", summary: "signed tokens: device certificates, invites, join strings") { bytes in
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        if let certificate = try? DeviceCertificate(token: text) {
            guard (try? DeviceCertificate(token: certificate.token)) == certificate else { return "a device certificate changed through its token" }
            _ = try? certificate.check(for: certificate.device)
        }
        if let invite = try? InviteToken(token: text) {
            guard (try? InviteToken(token: invite.token)) == invite else { return "an invite changed through its token" }
            _ = try? invite.check(gatewayKey: FuzzKeys.node.publicKey, role: .node)
        }
        if let join = try? JoinAddress(parsing: text) {
            guard (try? JoinAddress(parsing: join.description)) == join else { return "a join string changed through its text" }
        }
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            if let data = SignedToken.unbase64url(part), SignedToken.unbase64url(SignedToken.base64url(data)) != data {
                return "base64url does not round-trip"
            }
        }
        return nil
    }
}

/// A fixed key, so seeds and checks are reproducible. Not a secret: it signs nothing but fuzz inputs.
enum FuzzKeys {
    static let node = key(7)

    static func key(_ byte: UInt8) -> IdentityKey {
        IdentityKey(privateKey: try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(repeating: byte, count: 32)))
    }
}
