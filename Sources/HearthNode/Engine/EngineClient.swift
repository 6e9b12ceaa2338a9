import AsyncHTTPClient
import NIOCore

/// The HTTP client a node talks to its engines with: configured for LLM work, not for web pages.
///
/// `HTTPClient.shared` gives up on a response that has sent nothing for 90 s, whatever deadline the caller passes:
/// every non-streamed answer that took longer to generate (1,800 tokens on a busy CPU), and every stream queued behind
/// others for that long, failed with 502 after the engine had done the work. Here there is no read timeout: a request
/// lasts while the engine is alive and the gateway still wants the answer. It ends when the engine closes the
/// connection (it died or finished), when the caller's deadline passes, or when the caller's task is cancelled,
/// which is what happens when the gateway resets the request's stream (see `linkResponder`).
enum EngineClient {
    ///
    /// Every request has its own loopback connection (`connection: close`, see `EngineProxyController`), so the pool
    /// must not cap them: AsyncHTTPClient's default of 8 per host made the ninth concurrent stream wait for a slot,
    /// and a wait longer than the connect timeout failed it. Connecting on loopback is immediate or refused; 30 s
    /// covers a machine under heavy load.
    static let shared: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: .seconds(30), read: nil),
            decompression: .disabled
        )
        configuration.connectionPool = .init(idleTimeout: .seconds(5), concurrentHTTP1ConnectionsPerHostSoftLimit: 4096)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()
}
