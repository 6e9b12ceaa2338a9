package import HearthCore
import HearthMesh
import NIOCore
import NIOHTTP1
import Synchronization

/// One node's live link: the channel the node dialed, with the gateway as the HTTP/2 client on it.
final class NodeLink: Sendable {
    let nodeID: NodeID
    let channel: any Channel
    let multiplexer: LinkMultiplexer
    /// When the node last sent bytes (`nil` for a link without the handler that notes it).
    let activity: LinkActivity?
    /// Measures the link's round trip (`nil` for a link without the handler that does).
    let roundTrip: LinkRoundTrip?

    init(nodeID: NodeID, channel: any Channel, multiplexer: LinkMultiplexer, activity: LinkActivity? = nil, roundTrip: LinkRoundTrip? = nil) {
        self.nodeID = nodeID
        self.channel = channel
        self.multiplexer = multiplexer
        self.activity = activity
        self.roundTrip = roundTrip
    }

    /// One request on a new stream of the link.
    func send(_ method: HTTPMethod, _ uri: String, headers: HTTPHeaders = [:], body: ByteBuffer? = nil) async throws -> LinkResponse {
        try await LinkExchange.send(on: multiplexer, head: HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers), body: body)
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// The links of every connected node, and the transport that sends requests over them.
package final class NodeLinks: NodeTransport {
    private let links = Mutex<[NodeID: NodeLink]>([:])

    init() {}

    /// Records `link` as its node's link and returns the one it replaces (a node that dialed again).
    func insert(_ link: NodeLink) -> NodeLink? {
        links.withLock { links in
            let previous = links[link.nodeID]
            links[link.nodeID] = link
            return previous
        }
    }

    /// Forgets `link` if it is still its node's current link. Returns whether it was.
    func remove(_ link: NodeLink) -> Bool {
        links.withLock { links in
            guard links[link.nodeID] === link else { return false }
            links[link.nodeID] = nil
            return true
        }
    }

    /// `node`'s current link, if it has one.
    func link(to node: NodeID) -> NodeLink? {
        links.withLock { $0[node] }
    }

    /// Every current link.
    func all() -> [NodeLink] {
        links.withLock { Array($0.values) }
    }

    /// Closes `node`'s link, if it has one.
    func close(_ node: NodeID) {
        link(to: node)?.close()
    }

    /// Whether `node` has a link now.
    package func isLinked(_ node: NodeID) -> Bool {
        links.withLock { $0[node] != nil }
    }

    /// Opens a byte stream to `service` on `node`, through its link.
    /// - Throws: `NodeTransportError.notLinked`, `LinkTunnelError.refused` or a link error.
    func openTunnel(to node: NodeID, service: String) async throws -> LinkTunnel {
        guard let link = link(to: node) else { throw NodeTransportError.notLinked(node) }
        return try await LinkTunnel.open(on: link.multiplexer, service: service)
    }

    /// Opens a byte stream on `path` of `node` (see `LinkTunnel.open(on:path:)`).
    func openStream(to node: NodeID, path: String) async throws -> LinkTunnel {
        guard let link = link(to: node) else { throw NodeTransportError.notLinked(node) }
        return try await LinkTunnel.open(on: link.multiplexer, path: path)
    }

    /// One request to `node` with a JSON body, its answer's status and up to 64 KiB of its body.
    func call(
        _ method: HTTPMethod,
        _ path: String,
        on node: NodeID,
        headers: HTTPHeaders = [:],
        json body: ByteBuffer? = nil
    ) async throws -> (status: Int, body: String) {
        guard let link = link(to: node) else { throw NodeTransportError.notLinked(node) }
        var headers = headers
        headers.add(name: "content-type", value: "application/json")
        let response = try await link.send(method, path, headers: headers, body: body)
        var text = ""
        while let chunk = try await response.body.next(), text.utf8.count < 65_536 { text += String(buffer: chunk) }
        return (Int(response.head.status.code), text)
    }

    /// The number of linked nodes.
    var count: Int { links.withLock { $0.count } }

    package func cancel(requestID: String, on node: NodeID) async {
        guard let link = link(to: node) else { return }
        _ = try? await link.send(.POST, LinkProtocol.Path.cancel, headers: [LinkProtocol.Header.requestID: requestID], body: nil)
    }

    package func send(_ request: NodeRequest, to node: NodeID) async throws -> NodeResponse {
        guard let link = link(to: node) else { throw NodeTransportError.notLinked(node) }
        var headers: HTTPHeaders = [
            "content-type": "application/json", LinkProtocol.Header.requestID: request.requestID,
            LinkProtocol.Header.consumer: request.consumer,
        ]
        if let digest = request.modelSHA256 { headers.add(name: LinkProtocol.Header.modelSHA256, value: digest.hex) }
        if let pool = request.pool { headers.add(name: LinkProtocol.Header.pool, value: pool.rawValue) }
        let response = try await link.send(.POST, request.endpoint.rawValue, headers: headers, body: request.body)
        let body = response.body
        return NodeResponse(
            status: Int(response.head.status.code),
            contentType: response.head.headers.first(name: "content-type"),
            contentLength: response.head.headers.first(name: "content-length").flatMap { Int($0) },
            body: NodeResponseBody(next: { try await body.next() }, trailer: { body.trailers?.first(name: $0) }, eventLoop: link.channel.eventLoop),
            prefill: Self.prefill(response.head.headers.first(name: LinkProtocol.Header.prefill))
        )
    }

    /// `x-hearth-prefill` as a count, `nil` for anything else. Held to what a usage report may hold: the gateway adds
    /// it to a continued part's counts, and a node's `9223372036854775807` would overflow the sum.
    static func prefill(_ value: String?) -> Int? {
        value.flatMap { Int64($0) }.flatMap { TokenUsage.plausible.contains($0) ? Int($0) : nil }
    }
}
