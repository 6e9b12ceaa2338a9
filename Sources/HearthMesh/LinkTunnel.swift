import HearthCore
public import NIOCore
import NIOHTTP1

/// A full-duplex byte stream over one HTTP/2 stream of a link, to a TCP service the node exposes on its loopback
/// (`POST /link/v1/tunnel/{service}` on the node). Writes wait for the stream's flow-control window, reads only
/// open it as fast as they consume, so a slow end slows the other down instead of filling memory.
public final class LinkTunnel: Sendable {
    private let channel: any Channel
    /// The bytes from the service, until it closes its side.
    public let inbound: LinkResponseBody

    private init(channel: any Channel, inbound: LinkResponseBody) {
        self.channel = channel
        self.inbound = inbound
    }

    /// Opens a tunnel to `service` over a link.
    /// - Throws: `LinkTunnelError.refused` when the node has no such service or cannot reach it; link errors.
    public static func open(on multiplexer: LinkMultiplexer, service: String) async throws -> LinkTunnel {
        try await open(on: multiplexer, path: LinkProtocol.Path.tunnel(service))
    }

    /// Opens a byte stream on any of the node's stream routes (`POST path`); returns once the node answered 200,
    /// which for a pool's peer stream is when the head's engine connects.
    public static func open(on multiplexer: LinkMultiplexer, path: String) async throws -> LinkTunnel {
        let (channel, head, body) = try await LinkExchange.openStream(on: multiplexer)
        var request = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        request.headers.add(name: "host", value: "hearth-node")
        request.headers.add(name: "content-type", value: "application/octet-stream")
        try await channel.writeAndFlush(HTTPClientRequestPart.head(request))
        let received = try await LinkExchange.waitForHead(head, on: channel)
        guard received.status == .ok else {
            let message = String(buffer: (try? await body.collect(upTo: 4096)) ?? ByteBuffer())
            channel.close(promise: nil)
            throw LinkTunnelError.refused(status: Int(received.status.code), message: message)
        }
        return LinkTunnel(channel: channel, inbound: body)
    }

    /// Sends bytes to the service; returns once the stream has taken them (its window allowing).
    public func write(_ buffer: ByteBuffer) async throws {
        try await channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(buffer)))
    }

    /// Ends this direction; the node half-closes its connection to the service. Reading goes on.
    public func finish() async throws {
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
    }

    /// Resets the stream: both directions end at once.
    public func close() {
        channel.close(promise: nil)
    }
}

/// A tunnel could not be opened.
public enum LinkTunnelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The node answered with an error instead of opening the stream.
    case refused(status: Int, message: String)

    public var description: String {
        switch self {
        case .refused(let status, let message): "the node refused the tunnel (HTTP \(status)): \(message)"
        }
    }
}
