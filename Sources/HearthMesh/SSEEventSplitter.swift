import HearthCore
package import NIOCore

/// Cuts a byte stream of server-sent events into whole events without copying in the usual case
/// (a chunk that holds whole events is sliced, not copied).
package struct SSEEventSplitter: Sendable {
    package init() {}

    private var pending = ByteBuffer()
    private var scanner = SSEFraming.Scanner()

    /// Adds bytes read from upstream.
    package mutating func append(_ chunk: ByteBuffer) {
        if pending.readableBytes == 0 {
            pending = chunk
        } else {
            var chunk = chunk
            pending.writeBuffer(&chunk)
        }
    }

    /// The next whole event, blank line included, or `nil` when no whole event is buffered.
    package mutating func nextEvent() -> ByteBuffer? {
        guard let end = pending.withUnsafeReadableBytes({ scanner.nextEvent(in: $0) }) else { return nil }
        let event = pending.readSlice(length: end)
        // Emptied, the buffer would still hold the chunk's storage (often a reader's whole read buffer) until the next
        // chunk: let it go.
        if pending.readableBytes == 0 { pending = Self.empty }
        return event
    }

    private static let empty = ByteBuffer()

    /// Whatever is left when the stream ends (an unterminated last event).
    package mutating func remainder() -> ByteBuffer? {
        guard pending.readableBytes > 0 else { return nil }
        scanner.reset()
        defer { pending = Self.empty }
        return pending.readSlice(length: pending.readableBytes)
    }
}

extension ByteBuffer {
    /// Whether the readable bytes contain `needle` (ASCII).
    package func contains(_ needle: StaticString) -> Bool {
        withUnsafeReadableBytes { ByteSearch.firstIndex(of: needle, in: $0) != nil }
    }

    /// The JSON payload of a `data:` event, without the prefix and trailing blank line.
    package func ssePayload() -> ByteBuffer? {
        SSEFraming.payloadBytes(of: readableBytesView).map { ByteBuffer(bytes: $0) }
    }
}
