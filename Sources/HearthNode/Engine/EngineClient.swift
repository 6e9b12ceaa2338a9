import AsyncHTTPClient
import NIOCore

/// The HTTP client for a node's exchanges with its engines other than completions (those go through its own
/// `EngineConnection`): a continuation's templating and tokenizing, embeddings, the backend monitor's looks.
/// Configured for LLM work, not for web pages.
///
/// `HTTPClient.shared` gives up on a response that has sent nothing for 90 s, whatever deadline the caller passes:
/// every non-streamed answer that took longer to generate (1,800 tokens on a busy CPU), and every stream queued behind
/// others for that long, failed with 502 after the engine had done the work. Here there is no read timeout: a request
/// lasts while the engine is alive and the gateway still wants the answer. It ends when the engine closes the
/// connection (it died or finished), when the caller's deadline passes, or when the caller's task is cancelled,
/// which is what happens when the gateway resets the request's stream (see `linkResponder`).
enum EngineClient {
    ///
    /// A request to a managed engine through this client has its own loopback connection (`connection: close`; an
    /// owner's server keeps them, see `EngineAddress.clientRequestHeaders`), so the pool must not cap them: AsyncHTTPClient's default of 8 per
    /// host made the ninth concurrent stream wait for a slot, and a wait longer than the connect timeout failed it.
    /// Connecting on loopback is immediate or refused; 30 s covers a machine under heavy load.
    ///
    /// A connection that is refused fails its request at once: nothing listens there (the engine died, the owner
    /// stopped their server), and trying again, AsyncHTTPClient's default (`retryConnectionEstablishment`), kept the
    /// request waiting the whole connect timeout before the gateway could try another node. The node's looks at an
    /// owner's server go through this client too (`BackendMonitorService`): each look at a stopped server took its
    /// whole 10 s, and the node went on offering its models for two of them.
    ///
    /// A kept connection is closed after a second idle: before the server closes it (llama-server, uvicorn (vLLM)
    /// and Node's HTTP server, which LM Studio runs, do after 5 s), since a connection the server closes just as a
    /// request goes out fails that request (seen with fifty concurrent streams, when llama-server's were kept).
    static let shared: HTTPClient = {
        var pool = HTTPClient.Configuration.ConnectionPool(idleTimeout: .seconds(1), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096)
        pool.retryConnectionEstablishment = false
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: .seconds(30), read: nil),
            decompression: .disabled
        )
        configuration.connectionPool = pool
        // No tracing: Hearth bootstraps no tracer, and AsyncHTTPClient's default (the global one, a no-op) still made
        // a span and its attributes for every engine request (2 % of the node's CPU per whole answer, `perf`).
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}
