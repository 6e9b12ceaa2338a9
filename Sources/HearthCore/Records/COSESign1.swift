package import Foundation

/// A COSE_Sign1 message (RFC 9052 §4.2) signed with EdDSA (algorithm -8) over Ed25519: the envelope Hearth's
/// receipts and ledger heads travel in, so that any COSE implementation can check them.
///
///     COSE_Sign1 = #6.18([protected: bstr .cbor {1: -8}, unprotected: {? 4: kid}, payload: bstr, signature: bstr])
///
/// The signature covers `Sig_structure = ["Signature1", protected, h'', payload]` in deterministic CBOR.
package struct COSESign1: Sendable, Equatable {
    /// COSE header label for the algorithm, and EdDSA's value.
    package static let algorithmLabel: Int64 = 1
    package static let edDSA: Int64 = -8
    /// COSE header label for the key id, and the CBOR tag of COSE_Sign1.
    package static let keyIDLabel: Int64 = 4
    package static let tag: UInt64 = 18

    /// The protected header as the bytes that were signed.
    var protectedHeader: [UInt8]
    /// The key id from the unprotected header (Hearth puts the signer's raw public key there).
    package var keyID: [UInt8]?
    package var payload: [UInt8]
    var signature: [UInt8]

    /// Signs `payload` with `key`; the key id is the key's raw public key.
    package static func sign(payload: [UInt8], with key: IdentityKey) throws -> COSESign1 {
        let protected = try CBOR.map([(.int(algorithmLabel), .int(edDSA))]).encoded()
        let toBeSigned = try sigStructure(protected: protected, payload: payload)
        return COSESign1(
            protectedHeader: protected,
            keyID: Array(key.publicKey),
            payload: payload,
            signature: Array(try key.sign(toBeSigned))
        )
    }

    /// Whether the signature verifies under `publicKey` (raw Ed25519) and the protected header names EdDSA.
    package func isValid(publicKey: Data) -> Bool {
        guard let header = try? CBOR(decoding: protectedHeader), header[.int(Self.algorithmLabel)]?.int64 == Self.edDSA,
            let toBeSigned = try? Self.sigStructure(protected: protectedHeader, payload: payload)
        else { return false }
        return IdentityKey.isValidSignature(signature, of: toBeSigned, by: publicKey)
    }

    /// The tagged message in deterministic CBOR.
    package func encoded() throws -> [UInt8] {
        let unprotected: CBOR = .map(keyID.map { [(.int(Self.keyIDLabel), .bytes($0))] } ?? [])
        return try CBOR.tagged(Self.tag, .array([.bytes(protectedHeader), unprotected, .bytes(payload), .bytes(signature)])).encoded()
    }

    /// Reads a tagged COSE_Sign1 message; `isValid` checks it.
    /// - Throws: `CBORError` for malformed CBOR, `COSEError` for a well-formed item that is not a COSE_Sign1.
    package init(decoding bytes: some Collection<UInt8>) throws {
        guard case .tagged(Self.tag, .array(let parts)) = try CBOR(decoding: bytes), parts.count == 4,
            let protected = parts[0].bytesValue, case .map(let unprotected) = parts[1],
            let payload = parts[2].bytesValue, let signature = parts[3].bytesValue
        else { throw COSEError.notCOSESign1 }
        var keyID: [UInt8]?
        for (label, value) in unprotected where label.int64 == Self.keyIDLabel {
            guard let bytes = value.bytesValue else { throw COSEError.notCOSESign1 }
            keyID = bytes
        }
        self.init(protectedHeader: protected, keyID: keyID, payload: payload, signature: signature)
    }

    package init(protectedHeader: [UInt8], keyID: [UInt8]?, payload: [UInt8], signature: [UInt8]) {
        self.protectedHeader = protectedHeader
        self.keyID = keyID
        self.payload = payload
        self.signature = signature
    }

    /// The bytes an EdDSA signature covers (RFC 9052 §4.4), with empty external data.
    package static func sigStructure(protected: [UInt8], payload: [UInt8]) throws -> [UInt8] {
        try CBOR.array([.text("Signature1"), .bytes(protected), .bytes([]), .bytes(payload)]).encoded()
    }
}

/// A CBOR item that is not the COSE message expected.
struct COSEError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of refusal it is; more may be added.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        /// Well-formed CBOR, but not a tagged COSE_Sign1: protected header, unprotected map, payload, signature.
        static let notCOSESign1 = Code(name: "not_cose_sign1")
        var description: String { name }
    }

    var code: Code
    var description: String

    package static let notCOSESign1 = COSEError(code: .notCOSESign1, description: "not a COSE_Sign1 message")
}
