public import AsyncHTTPClient
public import HearthCore
import NIOCore
import NIOHTTP1

/// Reaches nodes over plain HTTP at the endpoint they announced.
public struct HTTPNodeTransport: NodeTransport {
    private let client: HTTPClient
    /// Upper bound on one whole request, generation included.
    private let deadline: Duration

    public init(client: HTTPClient, deadline: Duration = .seconds(1800)) {
        self.client = client
        self.deadline = deadline
    }

    public func send(_ request: NodeRequest, to node: NodeID, endpoint: String) async throws -> NodeResponse {
        guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            throw NodeTransportError.invalidEndpoint(endpoint)
        }
        var upstream = HTTPClientRequest(url: endpoint + request.endpoint.rawValue)
        upstream.method = .POST
        upstream.headers.add(name: "content-type", value: "application/json")
        upstream.headers.add(name: "x-request-id", value: request.requestID)
        upstream.body = .bytes(request.body)
        let response = try await client.execute(upstream, timeout: TimeAmount(deadline))
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
