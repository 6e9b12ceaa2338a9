import NIOCore
import Testing

@testable import HearthMesh

/// The splitter's bound on one event: a sender that never ends its event cannot make a node or a gateway keep all it
/// sends (a node in front of such an owner's server held a gigabyte in a trial, before the bound).
struct SSEEventSplitterTests {
    @Test func anEventThatNeverEndsIsRefusedPastTheBound() throws {
        var splitter = SSEEventSplitter()
        let chunk = ByteBuffer(repeating: UInt8(ascii: "a"), count: 64 << 10)
        splitter.append(ByteBuffer(string: #"data: {"x":""#))
        // Up to the bound, the event is still being read.
        for _ in 0..<(SSEEventSplitter.maxEventBytes / chunk.readableBytes - 1) {
            splitter.append(chunk)
            #expect(try splitter.nextEvent() == nil)
        }
        splitter.append(chunk)
        splitter.append(chunk)
        #expect(throws: SSEEventSplitter.EventTooLarge.self) { try splitter.nextEvent() }
    }

    @Test func manyWholeEventsInOneChunkAreNoLongEvent() throws {
        var splitter = SSEEventSplitter()
        let event = "data: " + String(repeating: "b", count: 1000) + "\n\n"
        let count = 2 * SSEEventSplitter.maxEventBytes / event.utf8.count
        splitter.append(ByteBuffer(string: String(repeating: event, count: count) + "data: start"))
        var events = 0
        while let next = try splitter.nextEvent() {
            #expect(next.readableBytes == event.utf8.count)
            events += 1
        }
        #expect(events == count)
        // The unfinished last one is handed over at the end, as it came.
        #expect(splitter.remainder().map { String(buffer: $0) } == "data: start")
    }
}
