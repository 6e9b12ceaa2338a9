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
        // memchr to each candidate first byte, memcmp for the rest (Glibc's memmem is not visible to Swift).
        var offset = 0
        while offset + needle.count <= haystack.count {
            guard let hit = memchr(base + offset, Int32(needle[0]), haystack.count - needle.count + 1 - offset) else { return nil }
            let index = base.distance(to: UnsafeRawPointer(hit))
            if memcmp(base + index, wanted, needle.count) == 0 { return index }
            offset = index + 1
        }
        return nil
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
