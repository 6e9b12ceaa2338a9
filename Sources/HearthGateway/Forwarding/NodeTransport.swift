package import HearthCore
package import NIOCore

/// A request the gateway sends to a node: an OpenAI endpoint and the JSON body to post.
package struct NodeRequest: Sendable {
    package var endpoint: CompletionEndpoint
    package var body: ByteBuffer
    /// The gateway's request id, forwarded as `x-request-id` so both sides log the same id.
    package var requestID: String
    /// Who asked, as the node's receipt names them (`anonymous`, `user:<id>`, `key:<id>`): `x-hearth-consumer`.
    package var consumer: String
    /// The catalog's hash for the model, as `x-hearth-model-sha256`: the node serves only that file.
    package var modelSHA256: SHA256Digest?
    /// The pool whose head should answer, as `x-hearth-pool`, when the node serves the model as a pool's head.
    var pool: PoolID?

    init(
        endpoint: CompletionEndpoint,
        body: ByteBuffer,
        requestID: String,
        consumer: String = "anonymous",
        modelSHA256: SHA256Digest? = nil,
        pool: PoolID? = nil
    ) {
        self.endpoint = endpoint
        self.body = body
        self.requestID = requestID
        self.consumer = consumer
        self.modelSHA256 = modelSHA256
        self.pool = pool
    }
}

/// A node's answer: status, content type and a body read chunk by chunk as it arrives.
package struct NodeResponse: Sendable {
    var status: Int
    var contentType: String?
    /// The body's length, when the node stated it (a whole answer): the body is then read that far, not to its end.
    var contentLength: Int?
    var body: NodeResponseBody
    /// For a continuation the node made: how many of its prompt tokens were the earlier answer (`x-hearth-prefill`).
    var prefill: Int?

    package init(status: Int, contentType: String?, contentLength: Int? = nil, body: NodeResponseBody, prefill: Int? = nil) {
        self.status = status
        self.contentType = contentType
        self.contentLength = contentLength
        self.body = body
        self.prefill = prefill
    }
}

/// The body of a node's answer. Reading it is not thread-safe: one task reads it from start to end.
/// Dropping it before the end cancels the request on the node.
package final class NodeResponseBody: @unchecked Sendable {
    private let nextChunk: () async throws -> ByteBuffer?
    private let trailerValue: (String) -> String?
    /// The event loop the body arrives on (the link's), where a task relaying it runs best; `nil` for a transport
    /// without one.
    let eventLoop: (any EventLoop)?

    package init(
        next: @escaping () async throws -> ByteBuffer?,
        trailer: @escaping (String) -> String? = { _ in nil },
        eventLoop: (any EventLoop)? = nil
    ) {
        self.nextChunk = next
        self.trailerValue = trailer
        self.eventLoop = eventLoop
    }

    /// The body's end (the trailers after it) has been read.
    private var ended = false
    /// The body was read only as far as its stated length (`collect(upTo:stated:)`): its end is still to come.
    private var endOwed = false

    /// How long a node may take to end a body read as far as its stated length: it sends its trailers (the signed
    /// receipt) right after the body.
    static let endWait: Duration = .seconds(5)

    /// A trailer the node sent after the body (its signed receipt), once the body has ended. A body read only as far as
    /// its stated length is read to its end first, for at most `endWait`; a trailer that does not come is `nil`.
    func trailer(_ name: String) async -> String? {
        if endOwed, !ended {
            endOwed = false
            _ = try? await withDeadline(Self.endWait) { try await self.next() }
        }
        return trailerValue(name)
    }

    /// The next chunk, or `nil` at the end.
    func next() async throws -> ByteBuffer? {
        guard let chunk = try await nextChunk() else {
            ended = true
            return nil
        }
        return chunk
    }

    /// Reads the rest of the body, up to `limit` bytes. With `stated`, the bytes the node's head says are left, it
    /// stops once it has them instead of waiting for the body's end: what follows is the trailers, which `trailer(_:)`
    /// waits for. A body that ends short of `stated` is broken off.
    func collect(upTo limit: Int, stated: Int? = nil) async throws -> ByteBuffer {
        var all = ByteBuffer()
        if let stated {
            guard (0...limit).contains(stated) else { throw NodeTransportError.responseTooLarge }
            endOwed = true
        }
        let most = stated ?? limit
        while all.readableBytes < stated ?? .max, let chunk = try await next() {
            guard all.readableBytes + chunk.readableBytes <= most else { throw NodeTransportError.responseTooLarge }
            var chunk = chunk
            all.writeBuffer(&chunk)
        }
        if let stated, all.readableBytes < stated { throw NodeTransportError.endedShort }
        return all
    }
}

/// How the gateway reaches nodes: the one seam for gateway-to-node traffic. In production it is the node's
/// dial-out link (`NodeLinks`); tests of the gateway alone use a named fake.
package protocol NodeTransport: Sendable {
    /// Sends `request` to `node` and returns once the response head has arrived.
    /// - Throws: when the node cannot be reached or fails before answering; the caller may retry elsewhere.
    func send(_ request: NodeRequest, to node: NodeID) async throws -> NodeResponse

    /// Asks `node` to stop the answer to `requestID` (its client went away): the node stops its engine and ends the
    /// stream with a receipt for the work done. Best effort: a node that does not answer is reset instead.
    func cancel(requestID: String, on node: NodeID) async
}

extension NodeTransport {
    package func cancel(requestID: String, on node: NodeID) async {}
}

package enum NodeTransportError: Error, Sendable {
    case responseTooLarge
    /// The body ended before the length its head stated.
    case endedShort
    /// The node has no link to this gateway.
    case notLinked(NodeID)
}
