import HearthCore
package import NIOCore

/// Cuts a byte stream of server-sent events into whole events without copying in the usual case
/// (a chunk that holds whole events is sliced, not copied).
package struct SSEEventSplitter: Sendable {
    package init() {}

    /// The longest event taken. More without the blank line that ends it is a broken or hostile sender: without a
    /// bound, the splitter kept all of it (an owner's server that never ended its event took its node to a gigabyte,
    /// and a node could do the same to its gateway). An engine's events are a few hundred bytes; with
    /// log-probabilities, a few kilobytes.
    package static let maxEventBytes = 1 << 20

    /// An event grew past `maxEventBytes` without ending.
    package struct EventTooLarge: Error, CustomStringConvertible {
        package var description: String { "an event of more than \(SSEEventSplitter.maxEventBytes >> 20) MiB without its end" }
    }

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
    /// - Throws: when what is buffered is the start of an event longer than `maxEventBytes`.
    package mutating func nextEvent() throws(EventTooLarge) -> ByteBuffer? {
        guard let end = pending.withUnsafeReadableBytes({ scanner.nextEvent(in: $0) }) else {
            if pending.readableBytes > Self.maxEventBytes { throw EventTooLarge() }
            return nil
        }
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
