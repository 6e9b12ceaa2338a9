#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Finding bytes in bytes, for the streaming path: every relayed event is searched for a few markers (`"usage"`,
/// `[DONE]`, `"prompt_n":`), so this must neither copy nor allocate.
package enum ByteSearch {
    /// The offset of the first occurrence of `needle` in `haystack`, or `nil`.
    package static func firstIndex(of needle: UnsafeRawBufferPointer, in haystack: UnsafeRawBufferPointer) -> Int? {
        guard !needle.isEmpty, needle.count <= haystack.count, let base = haystack.baseAddress, let wanted = needle.baseAddress else {
            return nil
        }
        // memchr to each place the needle's anchor byte could be, memcmp for the whole needle there (Glibc's memmem is
        // not visible to Swift). The anchor is the needle's first letter or digit: the markers searched for are JSON
        // keys, and a quote as anchor stopped at every one of an event's thirty-odd quotes.
        let anchor = needle.firstIndex { isLetterOrDigit($0) } ?? 0
        let last = haystack.count - needle.count  // The last offset the needle can start at.
        var offset = 0
        while offset <= last {
            guard let hit = memchr(base + offset + anchor, Int32(needle[anchor]), last - offset + 1) else { return nil }
            let index = base.distance(to: UnsafeRawPointer(hit)) - anchor
            if memcmp(base + index, wanted, needle.count) == 0 { return index }
            offset = index + 1
        }
        return nil
    }

    /// Whether `haystack` begins with `prefix`.
    package static func hasPrefix(_ prefix: StaticString, in haystack: UnsafeRawBufferPointer) -> Bool {
        prefix.withUTF8Buffer { prefix in
            guard prefix.count <= haystack.count, let base = haystack.baseAddress, let wanted = prefix.baseAddress else { return prefix.isEmpty }
            return memcmp(base, wanted, prefix.count) == 0
        }
    }

    private static func isLetterOrDigit(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte | 0x20) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
    }

    /// As above, for a needle written in the code (`"\"usage\""`).
    package static func firstIndex(of needle: StaticString, in haystack: UnsafeRawBufferPointer) -> Int? {
        needle.withUTF8Buffer { firstIndex(of: UnsafeRawBufferPointer($0), in: haystack) }
    }

    /// Whether `haystack` holds `needle`, for any byte collection (contiguous ones are not copied).
    package static func contains(_ needle: StaticString, in haystack: some Collection<UInt8>) -> Bool {
        withBytes(of: haystack) { firstIndex(of: needle, in: $0) != nil }
    }

    /// Runs `body` over the collection's bytes, copying them only when they are not contiguous.
    package static func withBytes<R>(of bytes: some Collection<UInt8>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let result = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return result }
        return Array(bytes).withUnsafeBytes(body)
    }
}
