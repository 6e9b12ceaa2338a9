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
    /// Connecting to an engine on loopback is immediate or refused; five seconds covers a machine under load.
    static let shared: HTTPClient = HTTPClient(
        eventLoopGroup: HTTPClient.defaultEventLoopGroup,
        configuration: HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(connect: .seconds(5), read: nil),
            decompression: .disabled
        )
    )
}
