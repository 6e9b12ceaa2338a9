import HearthMesh
import NIOCore

/// Entry points into internal pieces, for the gateway's unit tests (`package`: not part of the public API).
package enum GatewayTestHooks {
    package static func clientAddress(peer: String?, forwardedFor: [String], trusted: Set<String>) -> String {
        RateLimitMiddleware.clientAddress(peer: peer, forwardedFor: forwardedFor, trustedProxies: trusted)
    }

    /// Feeds `chunks` to the SSE splitter and returns the events it cuts, plus any unterminated rest.
    package static func splitEvents(_ chunks: [String]) throws -> [String] {
        var splitter = SSEEventSplitter()
        var events: [String] = []
        for chunk in chunks {
            splitter.append(ByteBuffer(string: chunk))
            while let event = try splitter.nextEvent() { events.append(String(buffer: event)) }
        }
        if let rest = splitter.remainder() { events.append(String(buffer: rest)) }
        return events
    }
}
