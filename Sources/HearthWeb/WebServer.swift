import Foundation
public import Hummingbird
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization

/// Hummingbird's `Application`, without the timer it runs to cache the `Date` header: that timer woke every server
/// once a second, and `hearth up` runs two (the API and the node's dashboard), on a volunteer's idle machine. Here
/// the header is made when a response needs it, at most once a second (`HTTPDateHeader`), and an idle server sleeps.
///
/// It is an `ApplicationProtocol`, so `HummingbirdTesting` drives it as it would an `Application`; only `run()`
/// differs: the same server, built the same way, with nothing else beside it.
public struct WebServer<Responder: HTTPResponder>: ApplicationProtocol
where Responder.Context: InitializableFromSource<ApplicationRequestContextSource> {
    public let responder: Responder
    public let server: HTTPServerBuilder
    public var configuration: ApplicationConfiguration
    public var logger: Logger
    public let eventLoopGroup: any EventLoopGroup
    private let running: @Sendable (any Channel) async -> Void

    public init(
        responder: Responder,
        server: HTTPServerBuilder = .http1(),
        configuration: ApplicationConfiguration,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in },
        logger: Logger
    ) {
        self.responder = responder
        self.server = server
        self.configuration = configuration
        self.running = onServerRunning
        self.logger = logger
        self.eventLoopGroup = EventLoopGroupProvider.singleton.eventLoopGroup
    }

    public init<Builder: HTTPResponderBuilder>(
        router: Builder,
        server: HTTPServerBuilder = .http1(),
        configuration: ApplicationConfiguration,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in },
        logger: Logger
    ) where Builder.Responder == Responder {
        self.init(
            responder: router.buildResponder(),
            server: server,
            configuration: configuration,
            onServerRunning: onServerRunning,
            logger: logger
        )
    }

    public func onServerRunning(_ channel: any Channel) async { await running(channel) }

    public func run() async throws {
        let responder = responder
        let serverName = configuration.serverName
        let dates = HTTPDateHeader()
        let server = try server.buildServer(
            configuration: ServerConfiguration(
                address: configuration.address,
                serverName: configuration.serverName,
                backlog: configuration.backlog,
                reuseAddress: configuration.reuseAddress,
                availableConnectionsDelegate: configuration.availableConnectionsDelegate
            ),
            eventLoopGroup: eventLoopGroup,
            logger: logger
        ) { [logger] (request, writer: consuming ResponseWriter, channel) in
            var logger = logger
            logger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
            let context = Responder.Context(source: .init(channel: channel, logger: logger))
            var response: Response
            do {
                response = try await responder.respond(to: request, context: context)
            } catch let error as HTTPParserError {
                // Hummingbird's channel handler answers a parse error with 400 and closes the connection.
                throw error
            } catch {
                logger.debug("unrecognised error", metadata: ["error.type": "\(error)"])
                response = Response(status: .internalServerError)
            }
            response.headers[.date] = dates.current()
            if let serverName { response.headers[.server] = serverName }
            do {
                if response.body.contentLength != nil {
                    // A body of known length (a buffer goes out with its head in one write).
                    try await writer.write(response: response.head, body: response.body)
                } else {
                    // A stream's head is let go of once written: the stream may run for minutes, and its head's
                    // fields (about a kibibyte) would stay with it (`bench/README.md`, twenty-third pass).
                    let body = response.body
                    let head = (consume response).head
                    let bodyWriter = try await writer.writeHead(consume head)
                    try await body.write(bodyWriter)
                }
            } catch is HTTPParserError {
                // Not the request's fault once its answer is being written: close, rather than answer twice.
                throw WriteFailed()
            }
        } onServerRunning: { channel in
            await running(channel)
        }
        try await server.run()
    }

    private struct WriteFailed: Error {}
}

/// The `Date` header (RFC 9110's IMF-fixdate), made on demand and kept for the second it names.
package final class HTTPDateHeader: Sendable {
    package init() {}

    private let cached = Mutex<(second: Int, text: String)>((-1, ""))

    package func current() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let second = now.tv_sec
        if let text = cached.withLock({ $0.second == second ? $0.text : nil }) { return text }
        let text = Self.format(second)
        cached.withLock { $0 = (second, text) }
        return text
    }

    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `Sun, 06 Nov 1994 08:49:37 GMT` for a count of seconds since 1970.
    package static func format(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
