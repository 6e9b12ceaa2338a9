package import Foundation

/// An identity on the network (a node, a person's account, a gateway): the lowercase hex SHA-256 of its raw Ed25519
/// public key, proven by a signature or a TLS handshake, never taken on trust.
package struct NodeID: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    /// Lowercase hexadecimal, 64 characters.
    package let rawValue: String

    /// Accepts only 64 lowercase hexadecimal characters.
    package init?(_ rawValue: String) {
        guard rawValue.utf8.count == 64, rawValue.utf8.allSatisfy({ Hex.isLowercaseDigit($0) }) else { return nil }
        self.rawValue = rawValue
    }

    /// The first 12 characters, for logs, headers and UIs.
    package var short: String { String(rawValue.prefix(12)) }
    package var description: String { rawValue }

    package static func < (lhs: NodeID, rhs: NodeID) -> Bool { lhs.rawValue < rhs.rawValue }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let id = NodeID(raw) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "node id must be 64 lowercase hex characters")
        }
        self = id
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A model name as clients send it, matched exactly (never by prefix or substring).
package struct ModelID: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    package let rawValue: String

    /// Model ids are 1 to 128 printable ASCII characters without spaces.
    package init?(_ rawValue: String) {
        guard (1...128).contains(rawValue.utf8.count), rawValue.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return nil }
        self.rawValue = rawValue
    }

    package var description: String { rawValue }
    package static func < (lhs: ModelID, rhs: ModelID) -> Bool { lhs.rawValue < rhs.rawValue }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let raw = try container.decode(String.self)
        guard let id = ModelID(raw) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "invalid model id")
        }
        self = id
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// A SHA-256 digest written as 64 lowercase hexadecimal characters.
package struct SHA256Digest: Hashable, Sendable, Codable, CustomStringConvertible {
    package let hex: String

    package init?(hex: String) {
        let lowered = hex.lowercased()
        guard lowered.utf8.count == 64, lowered.utf8.allSatisfy({ Hex.isLowercaseDigit($0) }) else { return nil }
        self.hex = lowered
    }

    package var description: String { hex }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard let digest = SHA256Digest(hex: try container.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "sha256 must be 64 hex characters")
        }
        self = digest
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(hex)
    }
}

/// Lowercase hexadecimal, the one encoding Hearth uses for digests, ids and random tokens.
package enum Hex {
    static func isLowercaseDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    /// `bytes` as lowercase hexadecimal, two characters per byte.
    package static func encode(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The bytes of lowercase hexadecimal text, or `nil` if it is not exactly that.
    package static func decode(_ text: some StringProtocol) -> Data? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0, digits.allSatisfy(isLowercaseDigit) else { return nil }
        func value(_ digit: UInt8) -> UInt8 { digit <= UInt8(ascii: "9") ? digit - UInt8(ascii: "0") : digit - UInt8(ascii: "a") + 10 }
        var bytes = Data(capacity: digits.count / 2)
        var index = 0
        while index < digits.count {
            bytes.append(value(digits[index]) << 4 | value(digits[index + 1]))
            index += 2
        }
        return bytes
    }

    /// `count` bytes from the system's secure random generator, as hexadecimal.
    package static func random(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return encode((0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }
}
