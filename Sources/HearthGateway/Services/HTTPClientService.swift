import AsyncHTTPClient
import NIOCore
import ServiceLifecycle

/// Owns the gateway's HTTP client for node traffic and shuts it down after everything that uses it has stopped.
struct HTTPClientService: Service {
    let client: HTTPClient

    /// A client for node traffic. It does not retry refused connections itself: a dead node must fail fast, so
    /// the dispatcher can try the next node while the client still waits for its first byte.
    static func makeNodeClient(connectTimeout: Duration) -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = TimeAmount(connectTimeout)
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    func run() async throws {
        try? await gracefulShutdown()
        try await client.shutdown()
    }
}
