import Foundation

extension JSONValue {
    /// The deepest nesting of arrays and objects Hearth reads from outside (clients, nodes). OpenAI bodies need about
    /// ten levels; JSON schemas in `tools` and `response_format` a few dozen.
    package static let maxDepth = 64

    /// Why bytes are not a `JSONValue`.
    package enum ParseError: Error, Sendable, Equatable {
        /// Arrays and objects nest deeper than `maxDepth`.
        case tooDeep(limit: Int)
        case invalid
    }

    /// Parses `bytes`, refusing nesting deeper than `maxDepth` before decoding them (`JSONValue+Native`).
    ///
    /// Foundation's decoder spends time on each value in proportion to its depth, so a body of nested brackets costs
    /// the square of its depth: 320 levels, under 1 KB, took 0.6 s of gateway CPU, and the decoder only stops at 512
    /// (found by the `completion` fuzzer as a timeout). The depth is counted first, in one pass outside strings.
    package static func parse(_ bytes: some Collection<UInt8>, maxDepth: Int = JSONValue.maxDepth) throws(ParseError) -> JSONValue {
        // The parser counts the depth as it descends and stops past `maxDepth`.
        let parsed: Result<JSONValue, ParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(ParseError) in try nativeParse(buffer, maxDepth: maxDepth) }
        }
        if let parsed { return try parsed.get() }
        return try Array(bytes).withUnsafeBufferPointer { buffer throws(ParseError) in try nativeParse(buffer, maxDepth: maxDepth) }
    }

    /// What Foundation's `JSONDecoder` makes of `bytes`: the reference the native parser is tested against.
    package static func foundationParse(_ bytes: some Collection<UInt8>) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    /// How deep arrays and objects nest in `bytes` (brackets inside strings do not count); it stops counting once past
    /// `limit`.
    package static func nestingDepth(of bytes: some Collection<UInt8>, stoppingAbove limit: Int = .max) -> Int {
        var depth = 0
        var deepest = 0
        var inString = false
        var escaped = false
        for byte in bytes {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > deepest {
                    deepest = depth
                    if deepest > limit { return deepest }
                }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
        return deepest
    }
}
