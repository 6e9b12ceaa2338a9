import Foundation
package import HearthCore
package import HearthGateway
import HearthMesh
import NIOCore
import Synchronization

/// A FAKE node transport for in-process gateway tests: it answers like a node would, from a script, without a
/// network or an engine. Live tests use real nodes instead.
package final class FakeNodeTransport: NodeTransport {
    /// What a fake node does with a request.
    package enum Behaviour: Sendable {
        /// Answer with this status, content type and these body chunks.
        case respond(status: Int, contentType: String, chunks: [String])
        /// Answer like `respond`, then send `receipt(request)` as the `hearth-receipt` trailer, as a node does.
        case respondWithReceipt(status: Int, contentType: String, chunks: [String], receipt: @Sendable (NodeRequest) -> String?)
        /// Fail before answering, like a node that went away.
        case fail
        /// Fail before answering as a link does when it closes: the node is gone.
        case linkClosed
        /// Answer 200 with these stream chunks, then break, like a node that died mid-stream.
        case breakAfter(chunks: [String])
        /// Answer 200 with these stream chunks, then end with `hearth-handover`, like a node that drains.
        case handOver(chunks: [String])
        /// Answer a continuation: these chunks, with `x-hearth-prefill` (`nil`: a node that ignores continuations).
        case continuation(chunks: [String], prefill: Int?)
        /// Answer like `respond`, its body once `gate` opens, like a node still generating a whole answer (its head
        /// comes at once).
        case respondOnceOpen(Gate, status: Int, contentType: String, chunks: [String])
        /// A whole answer whose head states its length: these chunks at once, then the end, with `receipt(request)` as the
        /// receipt trailer, only once `end` opens (a node still signing its receipt). `stated` overrides the length.
        case respondStatingLength(end: Gate, chunks: [String], stated: Int? = nil, receipt: @Sendable (NodeRequest) -> String?)
        /// Never answer, like a node in front of an engine that hangs; only the gateway's cancelling the wait (which
        /// on a real link resets the node's stream) ends it (counted in `abandoned`).
        case hang
    }

    private let behaviours: Mutex<[NodeID: Behaviour]>
    private let received = Mutex<[(node: NodeID, body: JSONValue)]>([])
    private let hashes = Mutex<[SHA256Digest?]>([])
    private let paths = Mutex<[CompletionEndpoint]>([])
    private let abandonedWaits = Mutex(0)

    /// Requests to a hanging node (`hang`) whose wait the gateway gave up.
    package var abandoned: Int { abandonedWaits.withLock { $0 } }

    package init(_ behaviours: [NodeID: Behaviour]) {
        self.behaviours = Mutex(behaviours)
    }

    private let cancels = Mutex<[String]>([])

    /// The requests sent so far, with the node each went to.
    package var requests: [(node: NodeID, body: JSONValue)] { received.withLock { $0 } }

    /// The request ids the gateway asked a node to stop, in order.
    package var cancelled: [String] { cancels.withLock { $0 } }

    package func cancel(requestID: String, on node: NodeID) async {
        cancels.withLock { $0.append(requestID) }
    }

    /// The model hash each request named (`x-hearth-model-sha256` on a real link), in order.
    package var modelHashes: [SHA256Digest?] { hashes.withLock { $0 } }

    /// The engine endpoint each request was for, in order.
    package var endpoints: [CompletionEndpoint] { paths.withLock { $0 } }

    package func send(_ request: NodeRequest, to node: NodeID) async throws -> NodeResponse {
        var bytes = request.body
        let body = bytes.readBytes(length: bytes.readableBytes).flatMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0)) } ?? .null
        received.withLock { $0.append((node, body)) }
        hashes.withLock { $0.append(request.modelSHA256) }
        paths.withLock { $0.append(request.endpoint) }
        switch behaviours.withLock({ $0[node] }) ?? .fail {
        case .fail:
            throw FakeNodeError()
        case .linkClosed:
            throw LinkError.closed
        case .hang:
            // Cancellation-aware without a fixed sleep: suspended until cancelled.
            let (never, _) = AsyncStream.makeStream(of: Void.self)
            for await _ in never {}
            abandonedWaits.withLock { $0 += 1 }
            throw CancellationError()
        case .respondOnceOpen(let gate, let status, let contentType, let chunks):
            let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
            return NodeResponse(
                status: status,
                contentType: contentType,
                body: NodeResponseBody(next: {
                    await gate.wait()
                    return queue.withLock { $0.isEmpty ? nil : $0.removeFirst() }
                })
            )
        case .respondStatingLength(let end, let chunks, let stated, let receipt):
            let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
            let ended = Mutex(false)
            let trailer = receipt(request)
            return NodeResponse(
                status: 200,
                contentType: "application/json",
                contentLength: stated ?? chunks.reduce(0) { $0 + $1.utf8.count },
                body: NodeResponseBody(
                    next: {
                        if let chunk = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) { return chunk }
                        await end.wait()
                        // Given up by the gateway: a link's stream would be reset, and its reader would throw.
                        try Task.checkCancellation()
                        ended.withLock { $0 = true }
                        return nil
                    },
                    trailer: { name in name == LinkProtocol.receiptTrailer && ended.withLock({ $0 }) ? trailer : nil }
                )
            )
        case .respond(let status, let contentType, let chunks):
            return Self.response(status: status, contentType: contentType, chunks: chunks)
        case .breakAfter(let chunks):
            let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
            return NodeResponse(
                status: 200,
                contentType: "text/event-stream",
                body: NodeResponseBody(next: {
                    guard let chunk = queue.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) else { throw FakeNodeError() }
                    return chunk
                })
            )
        case .handOver(let chunks):
            let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
            return NodeResponse(
                status: 200,
                contentType: "text/event-stream",
                body: NodeResponseBody(
                    next: { queue.withLock { $0.isEmpty ? nil : $0.removeFirst() } },
                    trailer: { name in name == LinkProtocol.handoverTrailer && queue.withLock({ $0.isEmpty }) ? "1" : nil }
                )
            )
        case .continuation(let chunks, let prefill):
            let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
            return NodeResponse(
                status: 200,
                contentType: "text/event-stream",
                body: NodeResponseBody(next: { queue.withLock { $0.isEmpty ? nil : $0.removeFirst() } }),
                prefill: prefill
            )
        case .respondWithReceipt(let status, let contentType, let chunks, let receipt):
            let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
            let trailer = receipt(request)
            return NodeResponse(
                status: status,
                contentType: contentType,
                body: NodeResponseBody(
                    next: { queue.withLock { $0.isEmpty ? nil : $0.removeFirst() } },
                    trailer: { name in name == LinkProtocol.receiptTrailer && queue.withLock({ $0.isEmpty }) ? trailer : nil }
                )
            )
        }
    }

    /// An answer of `chunks`, one at a time.
    private static func response(status: Int, contentType: String, chunks: [String]) -> NodeResponse {
        let queue = Mutex(chunks.map { ByteBuffer(string: $0) })
        return NodeResponse(
            status: status,
            contentType: contentType,
            body: NodeResponseBody(next: { queue.withLock { $0.isEmpty ? nil : $0.removeFirst() } })
        )
    }

    package struct FakeNodeError: Error {}

    /// The role chunk a chat stream starts with (`id` `chatcmpl-1`, `created` 42).
    package static let roleEvent =
        #"data: {"id":"chatcmpl-1","created":42,"choices":[{"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}"#
        + "\n\n"

    /// A chat chunk with `text`, unmarked (as a node that strips its marks would send it).
    package static func chatEvent(_ text: String) -> String {
        #"data: {"id":"chatcmpl-1","created":42,"choices":[{"index":0,"delta":{"content":"\#(text)"}}],"object":"chat.completion.chunk"}"# + "\n\n"
    }

    /// Chat events as a node marks them (`TokenMark`): each piece's event preceded by its token's comment line.
    /// `first` adds the role chunk a stream starts with (a continuation has none).
    package static func markedChatEvents(_ pieces: [(text: String, token: Int32)], first: Bool) -> [String] {
        (first ? [roleEvent] : []) + pieces.map { TokenMark(token: $0.token, kind: .clean).line + chatEvent($0.text) }
    }

    /// A streamed chat answer in llama-server's format: a role chunk, one chunk per piece, a finish chunk, the usage
    /// chunk and `[DONE]`.
    package static func chatStream(_ pieces: [String], promptTokens: Int = 7) -> [String] {
        var events = [#"data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}"# + "\n\n"]
        for piece in pieces {
            events.append(#"data: {"choices":[{"index":0,"delta":{"content":"\#(piece)"}}],"object":"chat.completion.chunk"}"# + "\n\n")
        }
        events.append(#"data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk"}"# + "\n\n")
        events.append(
            #"data: {"choices":[],"object":"chat.completion.chunk","usage":{"completion_tokens":\#(pieces.count),"prompt_tokens":\#(promptTokens),"total_tokens":\#(pieces.count + promptTokens)}}"#
                + "\n\n"
        )
        events.append("data: [DONE]\n\n")
        return events
    }
}
