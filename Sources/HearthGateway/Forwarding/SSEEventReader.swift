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
    /// - Throws: when the node's stream breaks.
    mutating func next() async throws -> ByteBuffer? {
        while true {
            if let event = splitter.nextEvent() { return event }
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

/// What one upstream event means to the gateway.
enum UpstreamEvent {
    /// The usage report; `usageOnly` when it is the extra chunk with no choices that `include_usage` adds.
    case usage(TokenUsage, usageOnly: Bool)
    /// The `[DONE]` terminator.
    case done
    /// Anything else: content, role or finish chunks.
    case other

    /// Classifies an event by scanning its bytes; only the rare usage event is decoded.
    static func classify(_ event: ByteBuffer) -> UpstreamEvent {
        if event.contains("\"usage\":{") {
            if let payload = SSEFraming.payloadBytes(of: event.readableBytesView), let chunk = CompletionChunk.parse(payload),
                let usage = chunk.usage
            {
                return .usage(usage, usageOnly: chunk.choices?.isEmpty ?? true)
            }
        } else if event.contains("[DONE]") {
            return .done
        }
        return .other
    }
}
