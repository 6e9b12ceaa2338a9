import AsyncHTTPClient
import HearthCore
import HearthGateway
import NIOCore
import NIOHTTP1

/// The foundation's plain-HTTP path to nodes, kept only in the benchmark so the secure link can be compared with
/// it in the same run. The product never reaches a node this way.
struct PlainHTTPNodeTransport: NodeTransport {
    let client: HTTPClient
    /// Where each node's HTTP API listens.
    let endpoints: [NodeID: String]

    func send(_ request: NodeRequest, to node: NodeID) async throws -> NodeResponse {
        guard let endpoint = endpoints[node] else { throw NodeTransportError.notLinked(node) }
        var upstream = HTTPClientRequest(url: endpoint + request.endpoint.rawValue)
        upstream.method = .POST
        upstream.headers.add(name: "content-type", value: "application/json")
        upstream.headers.add(name: LinkProtocol.Header.requestID, value: request.requestID)
        upstream.body = .bytes(request.body)
        let response = try await client.execute(upstream, timeout: .seconds(300))
        let box = IteratorBox(response.body.makeAsyncIterator())
        return NodeResponse(
            status: Int(response.status.code),
            contentType: response.headers.first(name: "content-type"),
            body: NodeResponseBody(next: { try await box.next() })
        )
    }
}

/// Holds the response body's iterator; only the task reading the body touches it.
private final class IteratorBox: @unchecked Sendable {
    var iterator: HTTPClientResponse.Body.AsyncIterator
    init(_ iterator: HTTPClientResponse.Body.AsyncIterator) { self.iterator = iterator }
    func next() async throws -> ByteBuffer? { try await iterator.next() }
}
