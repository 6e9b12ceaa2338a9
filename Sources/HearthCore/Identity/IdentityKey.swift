package import Crypto
package import Foundation

/// An Ed25519 key pair: a node's or a person's identity. The NodeID is the SHA-256 of the raw public key.
///
/// Keys are stored as standard PEM (PKCS#8 for the private key, SubjectPublicKeyInfo for the public key, RFC 8410),
/// so other tools (OpenSSL, Python's `cryptography`) read them too.
package struct IdentityKey: Sendable {
    /// The private key, made once: making it from its seed derives the public point, which cost the gateway more than
    /// the signature itself on every ledger entry it signed.
    package var privateKey: Curve25519.Signing.PrivateKey { box.key }
    private let box: KeyBox
    /// The raw 32-byte public key.
    package let publicKey: Data
    /// The identity this key proves.
    package let nodeID: NodeID

    package init(privateKey: Curve25519.Signing.PrivateKey) {
        box = KeyBox(key: privateKey)
        publicKey = privateKey.publicKey.rawRepresentation
        nodeID = NodeID(publicKey: publicKey)
    }

    /// Holds the key so that `IdentityKey` is `Sendable`: swift-crypto does not mark its keys so, but a key is an
    /// immutable value (its storage is never written after it is made), so reading it from several threads is safe.
    private final class KeyBox: @unchecked Sendable {
        let key: Curve25519.Signing.PrivateKey
        init(key: Curve25519.Signing.PrivateKey) { self.key = key }
    }

    /// A new key from the system's secure random generator.
    package static func generate() -> IdentityKey {
        IdentityKey(privateKey: Curve25519.Signing.PrivateKey())
    }

    /// Signs `data` (Ed25519).
    package func sign(_ data: some DataProtocol) throws -> Data {
        try privateKey.signature(for: data)
    }

    /// Whether `signature` is a valid Ed25519 signature of `data` by the raw public key `publicKey`.
    /// Malformed keys or signatures are simply invalid.
    package static func isValidSignature(_ signature: some DataProtocol, of data: some DataProtocol, by publicKey: Data) -> Bool {
        guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: publicKey) else { return false }
        return key.isValidSignature(signature, for: data)
    }

    // MARK: PEM

    /// RFC 8410 DER prefixes: PKCS#8 `PrivateKeyInfo` and `SubjectPublicKeyInfo` for Ed25519 (OID 1.3.101.112).
    static let pkcs8Prefix: [UInt8] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]
    static let spkiPrefix: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// The private key as a PKCS#8 PEM block.
    package var privateKeyPEM: String {
        Self.pem(label: "PRIVATE KEY", der: Self.pkcs8Prefix + privateKey.rawRepresentation)
    }

    /// The public key as a SubjectPublicKeyInfo PEM block.
    package var publicKeyPEM: String {
        Self.pem(label: "PUBLIC KEY", der: Self.spkiPrefix + publicKey)
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    /// - Throws: `IdentityKeyError` when the text is not exactly such a key.
    package init(privateKeyPEM text: String) throws(IdentityKeyError) {
        let der = try Self.der(fromPEM: text, label: "PRIVATE KEY")
        guard der.count == Self.pkcs8Prefix.count + 32, der.starts(with: Self.pkcs8Prefix) else {
            throw IdentityKeyError("not an Ed25519 PKCS#8 private key")
        }
        do {
            self.init(privateKey: try Curve25519.Signing.PrivateKey(rawRepresentation: der.suffix(32)))
        } catch {
            throw IdentityKeyError("invalid Ed25519 private key")
        }
    }

    /// The raw public key in a SubjectPublicKeyInfo PEM block.
    /// - Throws: `IdentityKeyError` when the text is not exactly an Ed25519 public key.
    package static func publicKey(fromPEM text: String) throws(IdentityKeyError) -> Data {
        let der = try der(fromPEM: text, label: "PUBLIC KEY")
        guard let key = publicKey(fromSPKI: der) else { throw IdentityKeyError("not an Ed25519 public key") }
        return key
    }

    /// The raw public key in a DER SubjectPublicKeyInfo, or `nil` when it is not exactly an Ed25519 key.
    package static func publicKey(fromSPKI der: some Collection<UInt8>) -> Data? {
        guard der.count == spkiPrefix.count + 32, der.starts(with: spkiPrefix) else { return nil }
        return Data(der.suffix(32))
    }

    static func pem(label: String, der: some Collection<UInt8>) -> String {
        let base64 = Data(der).base64EncodedString()
        var lines = ["-----BEGIN \(label)-----"]
        var index = base64.startIndex
        while index < base64.endIndex {
            let end = base64.index(index, offsetBy: 64, limitedBy: base64.endIndex) ?? base64.endIndex
            lines.append(String(base64[index..<end]))
            index = end
        }
        lines.append("-----END \(label)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    static func der(fromPEM text: String, label: String) throws(IdentityKeyError) -> [UInt8] {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard lines.count >= 3, lines.first == "-----BEGIN \(label)-----", lines.last == "-----END \(label)-----" else {
            throw IdentityKeyError("not a PEM block labelled \(label)")
        }
        guard let der = Data(base64Encoded: lines.dropFirst().dropLast().joined()) else {
            throw IdentityKeyError("the PEM body is not valid base64")
        }
        return Array(der)
    }
}

/// A key could not be read; the message says what is wrong with it.
package struct IdentityKeyError: Error, CustomStringConvertible, Sendable, Equatable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

extension NodeID {
    /// The NodeID of a raw 32-byte Ed25519 public key: lowercase hex SHA-256 of those bytes.
    package init(publicKey: some DataProtocol) {
        self.init(Hex.encode(SHA256.hash(data: publicKey)))!
    }
}
