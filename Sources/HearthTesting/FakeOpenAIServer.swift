import Foundation
package import HearthCore
import Hummingbird
import NIOCore
import Synchronization

/// A named fake: an owner's own OpenAI-compatible server as `hearth node --backend` sees one, for what no real server
/// here can show: a server that lies about its file, one that gives no way to check it, and Ollama's answers replayed
/// from fixtures (no Ollama can run on this machine). Real HTTP on 127.0.0.1; the answers are the script's.
package final class FakeOpenAIServer: Sendable {
    package struct Script: Sendable {
        /// The ids `/v1/models` lists.
        package var models: [String]
        /// Ollama's `/api/show` answer for any model; `nil` answers 404, as servers without that route do.
        package var show: JSONValue?
        /// A non-streamed chat answer.
        package var answer: JSONValue
        /// A streamed chat answer: the body as sent (`data:` events and `[DONE]`).
        package var stream: String
        /// When set, a streamed answer is this event sent over and over, each as soon as the connection takes it,
        /// until the client goes or `floodLimit` bytes have gone (a server faster than anyone reads it).
        package var flood: String?
        /// When set, completions are never answered (until the server stops): a server that hangs.
        package var hangs = false
        /// When set, a request that asks for a stream is answered whole (`answer`, JSON), as servers that ignore `stream`
        /// do.
        package var streamsWhole = false
        /// When set, `/v1/embeddings` answers this (as it is: one vector, whatever was asked); otherwise 404.
        package var embedding: JSONValue?
        /// When set, every route answers 401 unless the request says `Authorization: Bearer <apiKey>`, as vLLM started
        /// with `--api-key` does.
        package var apiKey: String?

        package init(models: [String], show: JSONValue? = nil, answer: JSONValue, stream: String, flood: String? = nil) {
            self.models = models
            self.show = show
            self.answer = answer
            self.stream = stream
            self.flood = flood
        }
    }

    /// The most a flooded answer sends.
    package static let floodLimit = 512 << 20

    private let script: Script
    private let received = Mutex<[(path: String, body: JSONValue)]>([])
    private let peers = Mutex<[Int]>([])
    private let flooded = Atomic<Int>(0)
    private let refusedKeys = Atomic<Int>(0)
    private let running = Mutex<LoopbackServer?>(nil)
    /// Opened when the server stops, so that a hanging answer lets the server's shutdown finish.
    private let stopping = Gate()

    private init(script: Script) {
        self.script = script
    }

    /// The base URL `--backend openai:` takes.
    package var baseURL: String { "http://127.0.0.1:\(running.withLock { $0?.port ?? 0 })/v1" }

    /// The bodies of the completions asked so far, with their paths.
    package var requests: [(path: String, body: JSONValue)] { received.withLock { $0 } }

    /// For each completion asked so far, the client's port: requests on one kept connection share it.
    package var completionPorts: [Int] { peers.withLock { $0 } }

    /// The bytes of flooded answers the server's connections have taken so far.
    package var floodedBytes: Int { flooded.load(ordering: .relaxed) }
    /// Requests refused for a missing or wrong key (`Script.apiKey`).
    package var refusedForTheKey: Int { refusedKeys.load(ordering: .relaxed) }

    /// Starts the server on a free port and waits until it listens.
    package static func start(_ script: Script) async throws -> FakeOpenAIServer {
        let server = FakeOpenAIServer(script: script)
        let running = try await LoopbackServer.start(router: server.router(), name: "fake-openai")
        server.running.withLock { $0 = running }
        return server
    }

    package func stop() async {
        stopping.open()
        await running.withLock({ $0 })?.stop()
    }

    private func router() -> Router<PeerRequestContext> {
        let router = Router(context: PeerRequestContext.self)
        let script = self.script
        if let key = script.apiKey { router.add(middleware: KeyGate(key: key) { self.refusedKeys.add(1, ordering: .relaxed) }) }
        router.get("/v1/models") { _, _ in
            Self.json(["object": "list", "data": .array(script.models.map { ["id": .string($0), "object": "model", "owned_by": "library"] })])
        }
        router.post("/api/show") { _, _ in
            guard let show = script.show else { return Response(status: .notFound) }
            return Self.json(show)
        }
        router.post("/v1/embeddings") { request, _ in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            self.received.withLock { $0.append(("/v1/embeddings", (try? JSONValue.parse(bytes.readableBytesView)) ?? .null)) }
            guard let embedding = script.embedding else { return Response(status: .notFound) }
            return Self.json(embedding)
        }
        router.post("/v1/chat/completions") { request, context in
            let bytes = try await request.body.collect(upTo: 1 << 20)
            let body = (try? JSONValue.parse(bytes.readableBytesView)) ?? .null
            self.received.withLock { $0.append(("/v1/chat/completions", body)) }
            self.peers.withLock { $0.append(context.peerPort) }
            if script.hangs {
                await self.stopping.wait()
                return Response(status: .serviceUnavailable)
            }
            guard body["stream"]?.boolValue == true, !script.streamsWhole else { return Self.json(script.answer) }
            if let flood = script.flood {
                let event = ByteBuffer(string: flood)
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/event-stream"],
                    body: ResponseBody { writer in
                        // A write waits while the connection takes no more: the count follows what the reader lets through.
                        while self.floodedBytes < Self.floodLimit {
                            try await writer.write(event)
                            self.flooded.add(event.readableBytes, ordering: .relaxed)
                        }
                        try await writer.finish(nil)
                    }
                )
            }
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream"],
                body: .init(byteBuffer: ByteBuffer(string: script.stream))
            )
        }
        return router
    }

    private static func json(_ value: JSONValue) -> Response {
        let data = (try? JSONEncoder().encode(value)) ?? Data()
        return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// vLLM's `--api-key`: a request without the key is answered 401, and counted.
private struct KeyGate: RouterMiddleware {
    let key: String
    let refused: @Sendable () -> Void

    func handle(
        _ request: Request,
        context: PeerRequestContext,
        next: (Request, PeerRequestContext) async throws -> Response
    ) async throws -> Response {
        guard request.headers[.authorization] == "Bearer " + key else {
            refused()
            let body = ByteBuffer(string: #"{"error":{"message":"Invalid API key","type":"invalid_request_error"}}"#)
            return Response(status: .unauthorized, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
        }
        return try await next(request, context)
    }
}

/// A request's context that knows the client's port, which tells its connection.
struct PeerRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let peerPort: Int

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        peerPort = source.channel.remoteAddress?.port ?? 0
    }
}
