/// Where a JSON object's members lie in its bytes, found without building their values: each key's and value's byte
/// range, so that a member can be read, replaced or removed by splicing bytes. The streaming path reads and rewrites
/// every event of every answer on both the node and the gateway; parsing each event into a `JSONValue` and writing it
/// out again was most of what that cost (`bench/README.md`).
///
/// The outline checks structure (brackets, strings, commas and colons), not every scalar: a number's or string's
/// content is read only when asked for, through `JSONValue.parse`. Bytes that are not a JSON object give `nil`, and
/// callers then take the slow path (parse, or pass the bytes on as they came).
package struct JSONOutline: Sendable {
    package struct Member: Sendable {
        /// The key's bytes between its quotes, escapes as written.
        package var key: Range<Int>
        /// The key's opening quote: where the member starts.
        var start: Int
        /// The value, from its first byte to its last.
        package var value: Range<Int>
    }

    /// The object's members in the order written (a repeated key appears twice; `member(_:)` takes the first, as the
    /// parser does).
    package let members: [Member]
    /// The object, from its opening brace to just past its closing one.
    package let range: Range<Int>

    /// The object whose opening brace is at `start` (whitespace before it is skipped), or `nil` when there is none,
    /// it is not well formed or it nests deeper than `maxDepth`.
    package init?(object bytes: UnsafeBufferPointer<UInt8>, at start: Int = 0, maxDepth: Int = JSONValue.maxDepth) {
        var scanner = Scanner(bytes: bytes, index: start, maxDepth: maxDepth)
        scanner.skipWhitespace()
        let open = scanner.index
        guard let members = try? scanner.object() else { return nil }
        self.members = members
        range = open..<scanner.index
    }

    /// The first member named `key` (a plain key: one written with escapes is not matched).
    package func member(_ key: StaticString, in bytes: UnsafeBufferPointer<UInt8>) -> Member? {
        index(of: key, in: bytes).map { members[$0] }
    }

    /// Where in `members` the first member named `key` is (for `removal(of:)`).
    package func index(of key: StaticString, in bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        let wanted = UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        return members.firstIndex { member in
            member.key.count == wanted.count && zip(bytes[member.key], wanted).allSatisfy { $0 == $1 }
        }
    }

    /// Whether the object is the whole of `bytes`, but for whitespace around it.
    package func isWhole(of bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var scanner = Scanner(bytes: bytes, index: range.upperBound, maxDepth: 0)
        scanner.skipWhitespace()
        guard scanner.index == bytes.count else { return false }
        scanner.index = 0
        scanner.skipWhitespace()
        return scanner.index == range.lowerBound
    }

    /// The elements of the array whose bytes are `range` (from its `[` to just past its `]`), or `nil` when it is no
    /// well-formed array.
    package static func elements(ofArray range: Range<Int>, in bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int = JSONValue.maxDepth) -> [Range<Int>]?
    {
        var scanner = Scanner(bytes: UnsafeBufferPointer(rebasing: bytes[..<range.upperBound]), index: range.lowerBound, maxDepth: maxDepth)
        guard let elements = try? scanner.array(), scanner.index == range.upperBound else { return nil }
        return elements
    }

    /// The bytes of `bytes` with each of `edits` (ranges that do not overlap, in any order) replaced by its bytes.
    package static func splice(_ bytes: UnsafeBufferPointer<UInt8>, _ edits: [(range: Range<Int>, with: [UInt8])]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count + 32)
        splice(bytes, edits) { output.append(contentsOf: $0) }
        return output
    }

    /// `splice`, handing the result's pieces to `write` in order rather than making an array of them (a node writes
    /// them straight into the buffer it sends). Edits in order are taken as they are; others are sorted first.
    package static func splice(
        _ bytes: UnsafeBufferPointer<UInt8>,
        _ edits: [(range: Range<Int>, with: [UInt8])],
        into write: (UnsafeBufferPointer<UInt8>) -> Void
    ) {
        let inOrder = zip(edits, edits.dropFirst()).allSatisfy { $0.range.lowerBound <= $1.range.lowerBound }
        var at = 0
        for edit in inOrder ? edits : edits.sorted(by: { $0.range.lowerBound < $1.range.lowerBound }) {
            write(UnsafeBufferPointer(rebasing: bytes[at..<edit.range.lowerBound]))
            edit.with.withUnsafeBufferPointer(write)
            at = edit.range.upperBound
        }
        write(UnsafeBufferPointer(rebasing: bytes[at...]))
    }

    /// The range to cut to remove `members[index]` with one comma next to it, so that what is left stays JSON.
    package func removal(of index: Int) -> Range<Int> {
        let member = members[index]
        if index + 1 < members.count { return member.start..<members[index + 1].start }
        if index > 0 { return members[index - 1].value.upperBound..<member.value.upperBound }
        return member.start..<member.value.upperBound
    }

    /// Walks JSON's structure over bytes.
    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        var index: Int
        let maxDepth: Int
        var depth = 0

        struct Malformed: Error {}

        /// A completion chunk has up to eight members (`id`, `object`, `created`, `model`, `system_fingerprint`,
        /// `choices`, `usage`, `timings`), and its `choices` one element.
        static let membersAtOnce = 8
        static let elementsAtOnce = 2

        mutating func skipWhitespace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x09 || bytes[index] == 0x0A || bytes[index] == 0x0D {
                index += 1
            }
        }

        private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

        private mutating func expect(_ byte: UInt8) throws(Malformed) {
            guard peek() == byte else { throw Malformed() }
            index += 1
        }

        /// An object's members; `collecting` false only walks over it (a nested value: its members are not asked for,
        /// and a node's answer of millions of them would otherwise make an array as large).
        mutating func object(collecting: Bool = true) throws(Malformed) -> [Member] {
            try expect(UInt8(ascii: "{"))
            depth += 1
            guard depth <= maxDepth else { throw Malformed() }
            defer { depth -= 1 }
            var members: [Member] = []
            var count = 0
            skipWhitespace()
            if peek() == UInt8(ascii: "}") {
                index += 1
                return members
            }
            // Room for a streamed event's members at once: grown from empty, the array was allocated three or four
            // times for every object (eight allocations an event, the most of any on the gateway's streaming path).
            if collecting { members.reserveCapacity(Self.membersAtOnce) }
            while true {
                skipWhitespace()
                // A comma before the closing brace is let through, as the parser lets it through.
                if peek() == UInt8(ascii: "}"), count > 0 {
                    index += 1
                    return members
                }
                let start = index
                try string()
                let key = (start + 1)..<(index - 1)
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                let valueStart = index
                try value()
                if collecting { members.append(Member(key: key, start: start, value: valueStart..<index)) }
                count += 1
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"):
                    index += 1
                    return members
                default: throw Malformed()
                }
            }
        }

        /// An array's elements; `collecting` as for `object`.
        mutating func array(collecting: Bool = true) throws(Malformed) -> [Range<Int>] {
            try expect(UInt8(ascii: "["))
            depth += 1
            guard depth <= maxDepth else { throw Malformed() }
            defer { depth -= 1 }
            var elements: [Range<Int>] = []
            var count = 0
            skipWhitespace()
            if peek() == UInt8(ascii: "]") {
                index += 1
                return elements
            }
            if collecting { elements.reserveCapacity(Self.elementsAtOnce) }
            while true {
                skipWhitespace()
                if peek() == UInt8(ascii: "]"), count > 0 {
                    index += 1
                    return elements
                }
                let start = index
                try value()
                if collecting { elements.append(start..<index) }
                count += 1
                skipWhitespace()
                switch peek() {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return elements
                default: throw Malformed()
                }
            }
        }

        mutating func value() throws(Malformed) {
            switch peek() {
            case UInt8(ascii: "{")?: _ = try object(collecting: false)
            case UInt8(ascii: "[")?: _ = try array(collecting: false)
            case UInt8(ascii: "\"")?: try string()
            case UInt8(ascii: "t")?: try word("true")
            case UInt8(ascii: "f")?: try word("false")
            case UInt8(ascii: "n")?: try word("null")
            case let byte? where byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte):
                // A number's characters; whether they make one is for whoever reads it.
                index += 1
                while let byte = peek(), Self.isNumberByte(byte) { index += 1 }
            default: throw Malformed()
            }
        }

        /// A string from its opening quote to just past its closing one; an escape's next byte never closes it.
        mutating func string() throws(Malformed) {
            try expect(UInt8(ascii: "\""))
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"): index += 2
                case 0..<0x20: throw Malformed()
                default: index += 1
                }
            }
            throw Malformed()
        }

        private mutating func word(_ word: StaticString) throws(Malformed) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw Malformed() }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { throw Malformed() }
            index += count
        }

        private static func isNumberByte(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e")
                || byte == UInt8(ascii: "E") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
        }
    }
}
