package import Foundation

/// The wire form of Hearth's small signed credentials (device certificates, invites):
/// `<kind>.<base64url(payload)>.<base64url(Ed25519 signature over payload)>`.
///
/// The payload is `kind` on the first line, then `key=value` lines in a fixed order. Values are limited to
/// `[A-Za-z0-9._:-]` (free text is base64url-encoded first), so a payload has exactly one reading and the signed
/// bytes never depend on dictionary order.
package enum SignedToken {
    /// Longest token accepted, so a hostile peer cannot make the parser work on megabytes.
    package static let maxLength = 4096

    /// The signed payload for `kind` with `fields` in this order.
    package static func payload(kind: String, fields: [(String, String)]) -> Data {
        var text = kind + "\n"
        for (key, value) in fields { text += "\(key)=\(value)\n" }
        return Data(text.utf8)
    }

    /// The token for a payload and its signature.
    package static func encode(kind: String, payload: Data, signature: Data) -> String {
        "\(kind).\(base64url(payload)).\(base64url(signature))"
    }

    /// Splits a token and reads its payload, which must list exactly `keys` in this order.
    /// - Returns: the payload bytes (for the signature check), the values by key, and the signature.
    /// - Throws: `CredentialError.malformed` for anything else.
    package static func decode(
        _ token: String,
        kind: String,
        keys: [String]
    ) throws(CredentialError) -> (
        payload: Data, values: [String: String], signature: Data
    ) {
        guard token.utf8.count <= maxLength else { throw .malformed("longer than \(maxLength) bytes") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == kind else { throw .malformed("not a \(kind) token") }
        guard let payload = unbase64url(parts[1]), let signature = unbase64url(parts[2]), signature.count == 64 else {
            throw .malformed("bad base64url or signature length")
        }
        guard let text = String(data: payload, encoding: .utf8), text.hasSuffix("\n") else { throw .malformed("payload is not text") }
        var lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(kind) else { throw .malformed("payload kind differs") }
        lines.removeFirst()
        guard lines.count == keys.count else { throw .malformed("expected fields \(keys.joined(separator: ","))") }
        var values: [String: String] = [:]
        for (line, key) in zip(lines, keys) {
            guard line.hasPrefix(key + "=") else { throw .malformed("expected field \(key)") }
            let value = String(line.dropFirst(key.count + 1))
            guard !value.isEmpty, value.utf8.allSatisfy(isValueByte) else { throw .malformed("field \(key) has a bad value") }
            values[key] = value
        }
        return (payload, values, signature)
    }

    static func isValueByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "-"): true
        default: false
        }
    }

    /// Base64url without padding (RFC 4648 §5).
    package static func base64url(_ data: Data) -> String {
        // Encoded here in one pass: Foundation's encoder and three `replacingOccurrences` cost the node 9 % of its
        // CPU per request, on the receipt trailer.
        let length = (data.count * 4 + 2) / 3
        return data.withUnsafeBytes { bytes in
            String(unsafeUninitializedCapacity: length) { out in
                var written = 0
                var index = 0
                while index < bytes.count {
                    let taken = min(3, bytes.count - index)
                    var group = UInt32(bytes[index]) << 16
                    if taken > 1 { group |= UInt32(bytes[index + 1]) << 8 }
                    if taken > 2 { group |= UInt32(bytes[index + 2]) }
                    // `taken` bytes make `taken + 1` characters; no padding.
                    for sextet in 0...taken {
                        out[written] = base64urlAlphabet[Int(group >> UInt32(18 - 6 * sextet) & 63)]
                        written += 1
                    }
                    index += taken
                }
                return written
            }
        }
    }

    private static let base64urlAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Decodes base64url without padding; `nil` for anything else.
    package static func unbase64url(_ text: some StringProtocol) -> Data? {
        // Decoded here in one pass over contiguous UTF-8, into a buffer of the exact size: mapping it to base64 for
        // Foundation's decoder cost the gateway 3.5 % of its CPU per request, on the receipt trailer, and then a
        // three-byte array per four characters and a generic walk over the characters cost it 3 % more.
        var text = String(text)
        return text.withUTF8 { decode($0) }
    }

    private static func decode(_ characters: UnsafeBufferPointer<UInt8>) -> Data? {
        // 4 characters make 3 bytes, 3 make 2, 2 make 1; a lone sixth of a byte is no encoding.
        guard characters.count % 4 != 1 else { return nil }
        var valid = true
        let bytes = [UInt8](unsafeUninitializedCapacity: characters.count * 3 / 4) { out, count in
            var group: UInt32 = 0
            var held = 0
            var written = 0
            defer { count = written }
            for character in characters {
                let value: UInt8
                switch character {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): value = character - UInt8(ascii: "A")
                case UInt8(ascii: "a")...UInt8(ascii: "z"): value = character - UInt8(ascii: "a") + 26
                case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character - UInt8(ascii: "0") + 52
                case UInt8(ascii: "-"): value = 62
                case UInt8(ascii: "_"): value = 63
                default:
                    valid = false
                    return
                }
                group = group << 6 | UInt32(value)
                held += 1
                if held == 4 {
                    out[written] = UInt8(truncatingIfNeeded: group >> 16)
                    out[written + 1] = UInt8(truncatingIfNeeded: group >> 8)
                    out[written + 2] = UInt8(truncatingIfNeeded: group)
                    written += 3
                    group = 0
                    held = 0
                }
            }
            switch held {
            case 2:
                out[written] = UInt8(truncatingIfNeeded: group >> 4)
                written += 1
            case 3:
                out[written] = UInt8(truncatingIfNeeded: group >> 10)
                out[written + 1] = UInt8(truncatingIfNeeded: group >> 2)
                written += 2
            default: break
            }
        }
        return valid ? Data(bytes) : nil
    }
}

/// A credential was refused: `code` says which way, stable for logs, metrics and link refusals; the description
/// explains, for a person.
package struct CredentialError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of refusal it is; more may be added.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        /// Not a token of the kind expected, or a field that is not what it must be.
        package static let malformed = Code(name: "malformed")
        /// The signature does not verify with the key it must.
        package static let badSignature = Code(name: "bad_signature")
        package static let expired = Code(name: "expired")
        package static let notYetValid = Code(name: "not_yet_valid")
        /// A device certificate for another device.
        package static let wrongDevice = Code(name: "wrong_device")
        /// An invite from another network.
        package static let wrongNetwork = Code(name: "wrong_network")
        /// An invite that does not allow the role asked.
        package static let roleNotAllowed = Code(name: "role_not_allowed")
        package var description: String { name }
    }

    package var code: Code
    package var description: String

    package init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }

    package static func malformed(_ detail: String) -> CredentialError { CredentialError(.malformed, "malformed credential: \(detail)") }
    package static let badSignature = CredentialError(.badSignature, "the signature does not verify")
    package static let expired = CredentialError(.expired, "the credential has expired")
    package static let notYetValid = CredentialError(.notYetValid, "the credential is not valid yet")
}
