import Foundation
import HearthCore
import HearthMesh
import NIOCore
import NIOFoundationEssentialsCompat

/// Reads whole server-sent events from an opened upstream response.
struct SSEEventReader {
    private var splitter = SSEEventSplitter()
    private let body: NodeResponseBody
    private var first: ByteBuffer?
    private var ended = false

    init(_ upstream: OpenedUpstream) {
        self.body = upstream.response.body
        self.first = upstream.firstChunk
    }

    /// The next event, or `nil` at the end of the stream.
    /// - Throws: when the node's stream breaks, or sends an event longer than `SSEEventSplitter.maxEventBytes`.
    mutating func next() async throws -> ByteBuffer? {
        while true {
            if let event = try splitter.nextEvent() { return event }
            if ended { return splitter.remainder() }
            if let chunk = first {
                first = nil
                splitter.append(chunk)
            } else if let chunk = try await body.next() {
                splitter.append(chunk)
            } else {
                ended = true
            }
        }
    }
}
