/// The header of a GGUF file (versions 2 and 3): its metadata and its tensor table, read without the weights.
///
/// The reader takes bytes from the start of a file. When they end inside the header it throws a `GGUFError` whose code
/// is `truncated`, with a lower bound of the bytes it needs (`neededBytes`), so a caller reading over HTTP ranges can
/// fetch more and try again. Every length and count is checked against the bytes at hand before it is used, so a
/// corrupt or hostile file is refused with a `GGUFError`, never a crash or a huge allocation.
package struct GGUFHeader: Sendable, Equatable {
    package var version: UInt32
    /// Metadata in file order.
    package var metadata: [(key: String, value: GGUFValue)]
    package var tensors: [GGUFTensorInfo]
    /// Where the tensor data starts (after the header, padded to the alignment).
    package var dataOffset: UInt64
    package var alignment: UInt64

    package static func == (lhs: GGUFHeader, rhs: GGUFHeader) -> Bool {
        lhs.version == rhs.version && lhs.tensors == rhs.tensors && lhs.dataOffset == rhs.dataOffset
            && lhs.metadata.map(\.key) == rhs.metadata.map(\.key) && lhs.metadata.map(\.value) == rhs.metadata.map(\.value)
    }

    /// The value of a metadata key.
    package subscript(key: String) -> GGUFValue? {
        metadata.first { $0.key == key }?.value
    }

    /// The model's architecture (`general.architecture`), which prefixes its shape keys.
    var architecture: String? { self["general.architecture"]?.string }
}

/// A metadata value.
package indirect enum GGUFValue: Sendable, Equatable {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    /// An array with its element type code, so an empty array keeps its type.
    case array(elementType: UInt32, [GGUFValue])

    var string: String? { if case .string(let value) = self { value } else { nil } }

    /// The value as an integer, for any integer type that fits.
    var integer: Int64? {
        switch self {
        case .uint(let value): value <= UInt64(Int64.max) ? Int64(value) : nil
        case .int(let value): value
        default: nil
        }
    }

    var array: [GGUFValue]? { if case .array(_, let values) = self { values } else { nil } }
}

/// One tensor's entry in the table: name, dimensions, ggml type and offset in the data section.
package struct GGUFTensorInfo: Sendable, Equatable {
    package var name: String
    package var dimensions: [UInt64]
    package var type: UInt32
    var offset: UInt64

    /// Number of elements.
    var elementCount: UInt64 { dimensions.reduce(1) { $0 &* $1 } }
}

/// Why a GGUF header was refused.
package struct GGUFError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of refusal it is; more may be added.
    package struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        /// No GGUF magic at the start.
        package static let notGGUF = Code(name: "not_gguf")
        /// A version other than 2 and 3.
        package static let unsupportedVersion = Code(name: "unsupported_version")
        /// The bytes end inside the header: `neededBytes` says how many would let the reader go further.
        package static let truncated = Code(name: "truncated")
        /// A header that is corrupt or hostile (an impossible count, a string that is not UTF-8, …).
        package static let invalid = Code(name: "invalid")
        package var description: String { name }
    }

    package var code: Code
    /// What was wrong, with the detail (the version, the count) that a person needs.
    var message: String
    /// For `truncated`: at least this many bytes from the start of the file are needed.
    package var neededBytes: UInt64?

    package var description: String { message }
    /// The code alone, without detail: for metric labels and logs that count refusals.
    var shortDescription: String { code.description }

    package static let notGGUF = GGUFError(code: .notGGUF, message: "not a GGUF file (no GGUF magic)")

    package static func unsupportedVersion(_ version: UInt32) -> GGUFError {
        GGUFError(code: .unsupportedVersion, message: "GGUF version \(version) is not supported (2 and 3 are)")
    }

    package static func truncated(needed: UInt64) -> GGUFError {
        GGUFError(code: .truncated, message: "the header is cut short (at least \(needed) bytes needed)", neededBytes: needed)
    }

    package static func invalid(_ detail: String) -> GGUFError {
        GGUFError(code: .invalid, message: "corrupt GGUF header: \(detail)")
    }
}

extension GGUFHeader {
    /// Limits that keep a hostile header cheap to refuse.
    static let maxStringBytes: UInt64 = 1 << 20
    static let maxCount: UInt64 = 1 << 24
    static let maxArrayDepth = 3
    static let maxDimensions: UInt32 = 4

    /// Reads the header from the first bytes of a file.
    /// - Throws: `GGUFError`; its code is `truncated` when more bytes would let it go further.
    package init(bytes: some Collection<UInt8>) throws(GGUFError) {
        var reader = GGUFReader(bytes: Array(bytes))
        guard reader.bytes.count >= 4 else { throw .truncated(needed: 24) }
        guard reader.bytes.prefix(4).elementsEqual([0x47, 0x47, 0x55, 0x46]) else { throw .notGGUF }
        reader.offset = 4
        let version = try reader.u32()
        guard version == 2 || version == 3 else { throw .unsupportedVersion(version) }
        let tensorCount = try reader.u64()
        let metadataCount = try reader.u64()
        guard tensorCount <= Self.maxCount, metadataCount <= Self.maxCount else { throw .invalid("impossible counts") }
        var metadata: [(key: String, value: GGUFValue)] = []
        for _ in 0..<metadataCount {
            let key = try reader.string()
            let type = try reader.u32()
            metadata.append((key, try reader.value(type: type, depth: 0)))
        }
        var tensors: [GGUFTensorInfo] = []
        for _ in 0..<tensorCount {
            let name = try reader.string()
            let dimensionCount = try reader.u32()
            guard dimensionCount >= 1, dimensionCount <= Self.maxDimensions else { throw .invalid("tensor \(name) has \(dimensionCount) dimensions") }
            var dimensions: [UInt64] = []
            for _ in 0..<dimensionCount { dimensions.append(try reader.u64()) }
            let type = try reader.u32()
            let offset = try reader.u64()
            tensors.append(GGUFTensorInfo(name: name, dimensions: dimensions, type: type, offset: offset))
        }
        var alignment: UInt64 = 32
        if let value = metadata.first(where: { $0.key == "general.alignment" })?.value {
            guard let declared = value.integer, declared > 0, declared <= 1 << 16, declared & (declared - 1) == 0 else {
                throw .invalid("general.alignment must be a power of two")
            }
            alignment = UInt64(declared)
        }
        let end = UInt64(reader.offset)
        self.init(
            version: version,
            metadata: metadata,
            tensors: tensors,
            dataOffset: (end + alignment - 1) / alignment * alignment,
            alignment: alignment
        )
    }
}

struct GGUFReader {
    let bytes: [UInt8]
    var offset = 0

    mutating func take(_ count: UInt64) throws(GGUFError) -> ArraySlice<UInt8> {
        let available = UInt64(bytes.count - offset)
        guard count <= available else { throw .truncated(needed: UInt64(offset) + count) }
        defer { offset += Int(count) }
        return bytes[offset..<offset + Int(count)]
    }

    mutating func little(_ width: Int) throws(GGUFError) -> UInt64 {
        var value: UInt64 = 0
        for (index, byte) in try take(UInt64(width)).enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }

    mutating func u32() throws(GGUFError) -> UInt32 { UInt32(try little(4)) }
    mutating func u64() throws(GGUFError) -> UInt64 { try little(8) }

    mutating func string() throws(GGUFError) -> String {
        let length = try u64()
        guard length <= GGUFHeader.maxStringBytes else { throw .invalid("a string of \(length) bytes") }
        guard let text = String(validating: try take(length), as: UTF8.self) else { throw .invalid("a string that is not UTF-8") }
        return text
    }

    /// The smallest encoding of one value of `type`, to bound an array's count by the bytes that could hold it.
    static func minimumSize(of type: UInt32) -> UInt64? {
        switch type {
        case 0, 1, 7: 1
        case 2, 3: 2
        case 4, 5, 6: 4
        case 8, 10, 11, 12: 8
        case 9: 12
        default: nil
        }
    }

    mutating func value(type: UInt32, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case 0: return .uint(try little(1))
        case 1: return .int(Int64(Int8(truncatingIfNeeded: try little(1))))
        case 2: return .uint(try little(2))
        case 3: return .int(Int64(Int16(truncatingIfNeeded: try little(2))))
        case 4: return .uint(try little(4))
        case 5: return .int(Int64(Int32(truncatingIfNeeded: try little(4))))
        case 6: return .float(Double(Float(bitPattern: UInt32(try little(4)))))
        case 7:
            let byte = try little(1)
            guard byte <= 1 else { throw .invalid("a bool of \(byte)") }
            return .bool(byte == 1)
        case 8: return .string(try string())
        case 9:
            guard depth < GGUFHeader.maxArrayDepth else { throw .invalid("arrays nested too deep") }
            let elementType = try u32()
            let count = try u64()
            guard let size = Self.minimumSize(of: elementType) else { throw .invalid("array element type \(elementType)") }
            guard count <= GGUFHeader.maxCount else { throw .invalid("an array of \(count) elements") }
            // The elements must fit in what is left; if not, at least this many bytes are needed.
            let available = UInt64(bytes.count - offset)
            guard count.multipliedReportingOverflow(by: size).partialValue <= available else {
                throw .truncated(needed: UInt64(offset) + count * size)
            }
            var values: [GGUFValue] = []
            values.reserveCapacity(Int(count))
            for _ in 0..<count { values.append(try value(type: elementType, depth: depth + 1)) }
            return .array(elementType: elementType, values)
        case 10: return .uint(try little(8))
        case 11: return .int(Int64(bitPattern: try little(8)))
        case 12: return .float(Double(bitPattern: try little(8)))
        default: throw .invalid("metadata value type \(type)")
        }
    }
}
