/// A CBOR data item (RFC 8949), limited to what Hearth's signed records use: integers, byte and text strings,
/// arrays, maps, tags, booleans and null. Floats and other simple values are refused.
///
/// Encoding is always deterministic (RFC 8949 §4.2.1): shortest-form integers and lengths, definite lengths only,
/// map keys sorted by the bytes of their encodings. Decoding accepts only that form, so one value has exactly one
/// encoding and signed bytes never depend on dictionary order.
package indirect enum CBOR: Sendable, Hashable {
    case unsigned(UInt64)
    /// The integer `-1 - n`.
    case negative(UInt64)
    case bytes([UInt8])
    case text(String)
    case array([CBOR])
    /// Key-value pairs; encoding sorts them and refuses duplicate keys.
    case map([(CBOR, CBOR)])
    case tagged(UInt64, CBOR)
    case bool(Bool)
    case null

    /// An integer item.
    package static func int(_ value: Int64) -> CBOR {
        value >= 0 ? .unsigned(UInt64(value)) : .negative(UInt64(-(value + 1)))
    }

    /// The value as an `Int64`, when it is an integer that fits.
    var int64: Int64? {
        switch self {
        case .unsigned(let value): value <= UInt64(Int64.max) ? Int64(value) : nil
        case .negative(let value): value <= UInt64(Int64.max) ? -1 - Int64(value) : nil
        default: nil
        }
    }

    var bytesValue: [UInt8]? { if case .bytes(let value) = self { value } else { nil } }
    var textValue: String? { if case .text(let value) = self { value } else { nil } }
    var arrayValue: [CBOR]? { if case .array(let value) = self { value } else { nil } }

    /// The value under `key` in a map.
    package subscript(key: CBOR) -> CBOR? {
        guard case .map(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    package static func == (lhs: CBOR, rhs: CBOR) -> Bool {
        // Items are equal when their deterministic encodings are; maps compare regardless of pair order. (Maps with
        // duplicate keys have no encoding; they only equal each other.)
        (try? lhs.encoded()) == (try? rhs.encoded())
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(try? encoded())
    }
}

/// Why CBOR bytes or a value were refused.
package struct CBORError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of refusal it is; more may be added.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        static let truncated = Code(name: "truncated")
        static let trailingBytes = Code(name: "trailing_bytes")
        static let tooLong = Code(name: "too_long")
        static let tooDeep = Code(name: "too_deep")
        static let nonCanonical = Code(name: "non_canonical")
        static let unsupported = Code(name: "unsupported")
        static let invalidUTF8 = Code(name: "invalid_utf8")
        var description: String { name }
    }

    var code: Code
    package var description: String
    /// The code alone, for metric labels and logs that count refusals.
    var shortDescription: String { code.description }

    /// The input ended inside an item.
    package static let truncated = CBORError(code: .truncated, description: "the CBOR ends inside an item")
    /// Bytes are left after the item.
    package static let trailingBytes = CBORError(code: .trailingBytes, description: "bytes are left after the CBOR item")
    /// A length or count larger than the input could hold, or than the decoder allows.
    package static let tooLong = CBORError(code: .tooLong, description: "a CBOR length or count is larger than allowed")
    /// Nesting deeper than the decoder allows.
    package static let tooDeep = CBORError(code: .tooDeep, description: "the CBOR nests deeper than allowed")
    /// A text string that is not UTF-8.
    package static let invalidUTF8 = CBORError(code: .invalidUTF8, description: "a CBOR text string is not UTF-8")

    /// Not the deterministic encoding: a non-minimal integer or length, an indefinite length, or unsorted or
    /// duplicate map keys.
    package static func nonCanonical(_ detail: String) -> CBORError {
        CBORError(code: .nonCanonical, description: "not deterministic CBOR: \(detail)")
    }

    /// A kind of item this implementation does not accept (floats, undefined, other simple values).
    package static func unsupported(_ detail: String) -> CBORError {
        CBORError(code: .unsupported, description: "unsupported CBOR: \(detail)")
    }
}

extension CBOR {
    /// The deterministic encoding.
    /// - Throws: `CBORError.nonCanonical` for a map with duplicate keys.
    package func encoded() throws(CBORError) -> [UInt8] {
        var out: [UInt8] = []
        try encode(into: &out)
        return out
    }

    private func encode(into out: inout [UInt8]) throws(CBORError) {
        switch self {
        case .unsigned(let value): Self.head(0, value, into: &out)
        case .negative(let value): Self.head(1, value, into: &out)
        case .bytes(let value):
            Self.head(2, UInt64(value.count), into: &out)
            out += value
        case .text(let value):
            let utf8 = Array(value.utf8)
            Self.head(3, UInt64(utf8.count), into: &out)
            out += utf8
        case .array(let items):
            Self.head(4, UInt64(items.count), into: &out)
            for item in items { try item.encode(into: &out) }
        case .map(let pairs):
            var entries: [(key: [UInt8], value: [UInt8])] = []
            for (key, value) in pairs { entries.append((try key.encoded(), try value.encoded())) }
            entries.sort { $0.key.lexicographicallyPrecedes($1.key) }
            for index in entries.indices.dropFirst() where entries[index].key == entries[index - 1].key {
                throw .nonCanonical("duplicate map key")
            }
            Self.head(5, UInt64(entries.count), into: &out)
            for entry in entries { out += entry.key + entry.value }
        case .tagged(let tag, let item):
            Self.head(6, tag, into: &out)
            try item.encode(into: &out)
        case .bool(let value): out.append(value ? 0xF5 : 0xF4)
        case .null: out.append(0xF6)
        }
    }

    /// The initial byte(s) of an item: major type and argument in the shortest form.
    private static func head(_ major: UInt8, _ argument: UInt64, into out: inout [UInt8]) {
        let type = major << 5
        switch argument {
        case 0..<24: out.append(type | UInt8(argument))
        case 24...0xFF: out += [type | 24, UInt8(argument)]
        case 0x100...0xFFFF: out += [type | 25] + bigEndian(argument, bytes: 2)
        case 0x1_0000...0xFFFF_FFFF: out += [type | 26] + bigEndian(argument, bytes: 4)
        default: out += [type | 27] + bigEndian(argument, bytes: 8)
        }
    }

    private static func bigEndian(_ value: UInt64, bytes: Int) -> [UInt8] {
        (0..<bytes).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }
}

extension CBOR {
    /// Decodes exactly one item in deterministic encoding from `bytes`.
    /// - Parameters:
    ///   - maxDepth: deepest nesting of arrays, maps and tags accepted.
    ///   - maxItems: most array elements or map pairs in one item.
    /// - Throws: `CBORError` for anything malformed, non-deterministic or unsupported; never traps.
    package init(decoding bytes: some Collection<UInt8>, maxDepth: Int = 16, maxItems: Int = 4096) throws(CBORError) {
        var reader = CBORReader(bytes: Array(bytes), maxDepth: maxDepth, maxItems: maxItems)
        self = try reader.item(depth: 0)
        guard reader.offset == reader.bytes.count else { throw .trailingBytes }
    }
}

struct CBORReader {
    let bytes: [UInt8]
    let maxDepth: Int
    let maxItems: Int
    var offset = 0

    mutating func byte() throws(CBORError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func take(_ count: UInt64) throws(CBORError) -> [UInt8] {
        guard count <= UInt64(bytes.count - offset) else { throw count > UInt64(bytes.count) ? .tooLong : .truncated }
        let end = offset + Int(count)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }

    /// Reads an argument and checks it is in its shortest form.
    mutating func argument(_ info: UInt8) throws(CBORError) -> UInt64 {
        switch info {
        case 0..<24: return UInt64(info)
        case 24...27:
            let width = 1 << Int(info - 24)
            var value: UInt64 = 0
            for byte in try take(UInt64(width)) { value = value << 8 | UInt64(byte) }
            let minimum: UInt64 = [24, 0x100, 0x1_0000, 0x1_0000_0000][Int(info - 24)]
            guard value >= minimum else { throw .nonCanonical("integer or length not in its shortest form") }
            return value
        case 31: throw .nonCanonical("indefinite length")
        default: throw .unsupported("reserved additional information \(info)")
        }
    }

    mutating func item(depth: Int) throws(CBORError) -> CBOR {
        let initial = try byte()
        let major = initial >> 5
        let info = initial & 0x1F
        if major == 7 {
            switch info {
            case 20: return .bool(false)
            case 21: return .bool(true)
            case 22: return .null
            case 25, 26, 27: throw .unsupported("floating-point numbers")
            default: throw .unsupported("simple value \(info)")
            }
        }
        let argument = try argument(info)
        switch major {
        case 0: return .unsigned(argument)
        case 1: return .negative(argument)
        case 2: return .bytes(try take(argument))
        case 3:
            guard let text = String(validating: try take(argument), as: UTF8.self) else { throw .invalidUTF8 }
            return .text(text)
        case 4:
            guard depth < maxDepth else { throw .tooDeep }
            guard argument <= UInt64(min(maxItems, bytes.count - offset)) else { throw .tooLong }
            var items: [CBOR] = []
            for _ in 0..<argument { items.append(try item(depth: depth + 1)) }
            return .array(items)
        case 5:
            guard depth < maxDepth else { throw .tooDeep }
            guard argument <= UInt64(min(maxItems, (bytes.count - offset) / 2)) else { throw .tooLong }
            var pairs: [(CBOR, CBOR)] = []
            var previousKey: [UInt8]?
            for _ in 0..<argument {
                let keyStart = offset
                let key = try item(depth: depth + 1)
                let keyBytes = Array(bytes[keyStart..<offset])
                if let previousKey, !previousKey.lexicographicallyPrecedes(keyBytes) {
                    throw .nonCanonical(previousKey == keyBytes ? "duplicate map key" : "map keys out of order")
                }
                previousKey = keyBytes
                pairs.append((key, try item(depth: depth + 1)))
            }
            return .map(pairs)
        default:  // 6
            guard depth < maxDepth else { throw .tooDeep }
            return .tagged(argument, try item(depth: depth + 1))
        }
    }
}
