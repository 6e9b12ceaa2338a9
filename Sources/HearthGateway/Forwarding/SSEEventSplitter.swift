import NIOCore

/// Cuts a byte stream of server-sent events into whole events without copying in the usual case
/// (a chunk that holds whole events is sliced, not copied).
struct SSEEventSplitter {
    private var pending = ByteBuffer()

    /// Adds bytes read from upstream.
    mutating func append(_ chunk: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = chunk
        } else {
            var chunk = chunk
            pending.writeBuffer(&chunk)
        }
    }

    /// The next whole event, blank line included, or `nil` when no whole event is buffered.
    mutating func nextEvent() -> ByteBuffer? {
        guard let end = pending.withUnsafeReadableBytes({ Self.endOfEvent(in: $0) }) else { return nil }
        return pending.readSlice(length: end)
    }

    /// Whatever is left when the stream ends (an unterminated last event).
    mutating func remainder() -> ByteBuffer? {
        guard pending.readableBytes > 0 else { return nil }
        return pending.readSlice(length: pending.readableBytes)
    }

    /// The length of the first event, through its terminating blank line (`\n\n` or `\r\n\r\n`).
    static func endOfEvent(in bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count >= 2 else { return nil }
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == UInt8(ascii: "\n") {
                if bytes[index + 1] == UInt8(ascii: "\n") { return index + 2 }
                if bytes[index + 1] == UInt8(ascii: "\r"), index + 2 < bytes.count, bytes[index + 2] == UInt8(ascii: "\n") {
                    return index + 3
                }
            }
            index += 1
        }
        return nil
    }
}

extension ByteBuffer {
    /// Whether the readable bytes contain `needle` (ASCII).
    func contains(_ needle: StaticString) -> Bool {
        withUnsafeReadableBytes { haystack in
            needle.withUTF8Buffer { needle in
                guard needle.count <= haystack.count, let first = needle.first else { return false }
                var index = 0
                while index + needle.count <= haystack.count {
                    if haystack[index] == first {
                        var match = true
                        for offset in 1..<needle.count where haystack[index + offset] != needle[offset] {
                            match = false
                            break
                        }
                        if match { return true }
                    }
                    index += 1
                }
                return false
            }
        }
    }

    /// The JSON payload of a `data:` event, without the prefix and trailing blank line.
    func ssePayload() -> ByteBuffer? {
        var copy = self
        guard let text = copy.readString(length: copy.readableBytes) else { return nil }
        var payload = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let trimmed = line.hasSuffix("\r") ? line.dropLast() : line[...]
            if trimmed.hasPrefix("data:") {
                payload += trimmed.dropFirst(5).drop(while: { $0 == " " })
            }
        }
        return payload.isEmpty ? nil : ByteBuffer(string: payload)
    }
}
