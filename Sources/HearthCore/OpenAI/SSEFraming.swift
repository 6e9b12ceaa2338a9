/// How server-sent events are cut out of a byte stream (the WHATWG event-stream format, as llama-server writes it):
/// an event ends at its first blank line (`\n\n` or `\n\r\n`), and its data is the `data:` lines joined.
///
/// Pure functions over bytes, so that the gateway's buffering splitter and the fuzzer judge the same rules.
package enum SSEFraming {
    /// The length of the first event in `bytes`, through its terminating blank line, or `nil` when no event is whole.
    /// `start` skips bytes already searched (a terminator may begin at most two bytes before the old end).
    package static func endOfEvent(in bytes: UnsafeRawBufferPointer, from start: Int = 0) -> Int? {
        guard bytes.count >= 2 else { return nil }
        var index = max(0, min(start, bytes.count))
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

    /// Finds event ends in a buffer that grows at its end and is consumed at its front, remembering how far it has
    /// searched, so an event arriving in many small chunks is scanned once, not once per chunk.
    package struct Scanner: Sendable {
        private var searched = 0

        package init() {}

        /// The length of the first whole event in `pending`; the caller then consumes exactly that many bytes.
        /// `nil` means more bytes are needed: the caller appends them and asks again.
        package mutating func nextEvent(in pending: UnsafeRawBufferPointer) -> Int? {
            // A terminator may begin up to two bytes before where the last search stopped.
            guard let end = SSEFraming.endOfEvent(in: pending, from: max(0, searched - 2)) else {
                searched = pending.count
                return nil
            }
            searched = 0
            return end
        }

        /// Forgets the search, after the caller consumed the buffer another way.
        package mutating func reset() { searched = 0 }
    }

    /// The data of one event: its `data:` lines (the one space after the colon and a trailing `\r` dropped) joined
    /// by newlines, as the format says; `nil` when the event has no data or it is not UTF-8.
    package static func payload(of event: some BidirectionalCollection<UInt8>) -> String? {
        payloadBytes(of: event).flatMap { String(validating: $0, as: UTF8.self) }
    }

    /// The data of one event as bytes, not checked to be UTF-8: for the JSON parser, which checks as it reads, on the
    /// streaming path where making a `String` of every event cost a tenth of the gateway's CPU.
    package static func payloadBytes(of event: some BidirectionalCollection<UInt8>) -> [UInt8]? {
        ByteSearch.withBytes(of: event) { payloadBytes(in: $0) }
    }

    /// `body` with the data of one event, as `payloadBytes` gives it: read in place when the event has one `data:`
    /// line (every event an engine writes), joined into a new array only when it has several. `nil` when the event has
    /// no data. Once an event on the streaming path, where the copy was an allocation per event.
    package static func withPayload<Result>(of event: UnsafeRawBufferPointer, _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result? {
        var only: Range<Int>?
        var several = false
        forEachDataLine(in: event) { value in
            if only == nil { only = value } else { several = true }
        }
        guard let only, !several else { return payloadBytes(in: event)?.withUnsafeBufferPointer(body) }
        guard !only.isEmpty else { return nil }
        return body(UnsafeRawBufferPointer(rebasing: event[only]).assumingMemoryBound(to: UInt8.self))
    }

    /// The lines walked by hand over contiguous bytes: a generic `split` made an array of slices for every event.
    private static func payloadBytes(in bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        var data: [UInt8] = []
        var found = false
        forEachDataLine(in: bytes) { value in
            if found { data.append(UInt8(ascii: "\n")) }
            data.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[value]))
            found = true
        }
        guard found, !data.isEmpty else { return nil }
        return data
    }

    /// Calls `body` with where the value of each `data:` line lies (the one space after the colon and a trailing
    /// `\r` left out), in order.
    private static func forEachDataLine(in bytes: UnsafeRawBufferPointer, _ body: (Range<Int>) -> Void) {
        var start = 0
        while start < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
            let end = rest.firstIndex(of: UInt8(ascii: "\n")).map { start + $0 } ?? bytes.count
            var lineEnd = end
            if lineEnd > start, bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            if lineEnd - start >= prefix.count, prefix.indices.allSatisfy({ bytes[start + $0] == prefix[$0] }) {
                var valueStart = start + prefix.count
                if valueStart < lineEnd, bytes[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
                body(valueStart..<lineEnd)
            }
            start = end + 1
        }
    }

    private static let prefix = Array("data:".utf8)
}
