import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Counts the API connections open from each client address, so a handful of clients cannot take every file
/// descriptor the gateway has.
package final class ConnectionCounter: Sendable {
    private let open = Mutex<[String: Int]>([:])
    /// Connections one address may hold at once.
    let limitPerAddress: Int
    /// Addresses that are never limited (trusted proxies carry many clients' connections).
    let exempt: Set<String>

    init(limitPerAddress: Int, exempt: Set<String>) {
        self.limitPerAddress = limitPerAddress
        self.exempt = exempt
    }

    /// Counts a new connection from `address`; `false` when that address is at its limit (nothing is counted then).
    func admit(_ address: String) -> Bool {
        if exempt.contains(address) { return true }
        return open.withLock { open in
            let current = open[address, default: 0]
            guard current < limitPerAddress else { return false }
            open[address] = current + 1
            return true
        }
    }

    func release(_ address: String) {
        if exempt.contains(address) { return }
        open.withLock { open in
            let remaining = open[address, default: 0] - 1
            open[address] = remaining > 0 ? remaining : nil
        }
    }

    /// Open connections from `address` (for tests and the metrics page).
    package func count(for address: String) -> Int {
        open.withLock { $0[address, default: 0] }
    }

    /// Refusals over the limit since the last one was logged, and when that was: a flood of them is one line every
    /// `refusalLogInterval`, not one per connection.
    private let refusals = Mutex<(count: Int, loggedAt: NIODeadline?)>((0, nil))
    static let refusalLogInterval = TimeAmount.seconds(10)

    /// Counts a refusal; the number to log (this one and those not logged before it), or `nil` to stay quiet.
    func refusalToLog(now: NIODeadline = .now()) -> Int? {
        refusals.withLock { refusals in
            refusals.count += 1
            if let last = refusals.loggedAt, now - last < Self.refusalLogInterval { return nil }
            defer { refusals = (0, now) }
            return refusals.count
        }
    }
}

/// One per API connection: refuses a connection over its address's limit, and closes one whose first request head
/// has not arrived within `headerTimeout` (a client that connects and sends nothing, or trickles its headers).
///
/// Between requests, and while a body is being read, Hummingbird's own idle timeout applies; a request being
/// answered (a long stream, a slow non-streamed answer) is never cut by either.
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let counter: ConnectionCounter
    private let headerTimeout: TimeAmount
    /// Says why a connection was closed before any answer: its client only sees the connection end.
    private let logger: Logger
    private var address: String?
    private var counted = false
    private var headerTimer: Scheduled<Void>?

    init(counter: ConnectionCounter, headerTimeout: TimeAmount, logger: Logger) {
        self.counter = counter
        self.headerTimeout = headerTimeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            headerTimer?.cancel()
            headerTimer = nil
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard address == nil else { return }
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        self.address = address
        guard counter.admit(address) else {
            if let refused = counter.refusalToLog() {
                logger.notice(
                    "closed connections over their address's limit",
                    metadata: ["client.address": "\(address)", "limit": "\(counter.limitPerAddress)", "connections": "\(refused)"]
                )
            }
            context.close(promise: nil)
            return
        }
        counted = true
        let loopBound = context.eventLoop.assumeIsolated()
        let (logger, timeout) = (logger, headerTimeout)
        headerTimer = loopBound.scheduleTask(in: headerTimeout) {
            logger.info(
                "closed a connection that sent no request head in time",
                metadata: ["client.address": "\(address)", "timeout": "\(timeout.nanoseconds / 1_000_000) ms"]
            )
            context.close(promise: nil)
        }
    }

    private func stop() {
        headerTimer?.cancel()
        headerTimer = nil
        if counted, let address {
            counted = false
            counter.release(address)
        }
    }
}
