import HearthCore
import HearthMesh
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP2
import NIOHTTPTypes
import NIOHTTPTypesHTTP2
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// The node's one connection to its gateway: dialed out, TLS 1.3 with the gateway's key pinned, HTTP/2 inside with
/// the node as the server, so the node never listens on the network.
///
/// The gateway sends every request, and its report polls, as streams on this link. When the link drops, or the
/// gateway stops polling for `linkTimeout`, the node dials again with jittered exponential backoff. On shutdown
/// it reports that it is draining, waits for the requests in flight (up to `drainTimeout`), then closes the link.
struct GatewayLinkService: Service {
    let identity: NodeIdentity
    let configuration: NodeConfiguration
    let status: NodeStatus
    let responder: HTTP1Channel
    /// The byte-stream routes, spliced below the router.
    let streams: LinkByteStreams
    /// The answers under way: streams still going at the drain timeout are handed over.
    let inFlight: InFlightRequests
    let logger: Logger

    func run() async throws {
        let credentials = try LinkCredentials(identity: identity.key)
        let context = try NIOSSLContext(configuration: LinkTLS.configuration(credentials: credentials, role: .client))
        let stopping = Atomic<Bool>(false)
        try await withGracefulShutdownHandler {
            var failures = 0
            while !stopping.load(ordering: .relaxed) && !Task.isCancelled {
                guard let join = await configuration.resolveJoin() else {
                    throw NodeStartError("no gateway to join: give --join host:port#gateway-id")
                }
                // Addresses in the order the join string gives them: the first that answers and proves the pin wins.
                // Once a link ends, the next round starts from the first again.
                var lasted = false
                for endpoint in join.endpoints {
                    let dialedAt = ContinuousClock.now
                    do {
                        try await connectAndServe(endpoint, pin: join.pin, context: context)
                        // A link that closes at once (say, a gateway that refuses this key after the handshake) counts
                        // as a failure, so the node backs off instead of redialing every half second.
                        lasted = ContinuousClock.now - dialedAt >= .seconds(10)
                        break
                    } catch {
                        logger.warning(
                            "gateway link failed",
                            metadata: ["node.gateway": "\(endpoint)", "error": "\(Self.explain(error, endpoint: endpoint, pin: join.pin))"]
                        )
                        if stopping.load(ordering: .relaxed) || status.hasRefusal { break }
                    }
                }
                failures = lasted ? 0 : failures + 1
                if let refusal = status.takeRefusal() {
                    logger.error("the gateway refused this node: \(refusal.message)", metadata: ["node.refusal": "\(refusal.reason)"])
                    // Dialing again cannot help until the owner changes something (an invite, a certificate).
                    guard refusal.retry else { throw NodeStartError("the gateway at \(join) refused this node: \(refusal.description)") }
                    failures = max(failures, 6)
                }
                if stopping.load(ordering: .relaxed) { break }
                let delay = Self.backoff(failures: failures)
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            }
        } onGracefulShutdown: {
            stopping.store(true, ordering: .relaxed)
            status.beginDraining()
        }
    }

    /// Dials `endpoint`, proves both identities (the gateway's against `pin`), and serves the gateway's streams until
    /// the link closes.
    private func connectAndServe(_ endpoint: JoinAddress.Endpoint, pin: JoinAddress.Pin, context: NIOSSLContext) async throws {
        let linkPin: LinkPin =
            switch pin {
            case .gateway(let id): .identity(id)
            case .network(let id): .network(id)
            }
        let (channel, multiplexer, peer) = try await LinkDial.connect(host: endpoint.host, port: endpoint.port, context: context, pin: linkPin) {
            stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                try stream.pipeline.syncOperations.addHandler(ByteStreamSplitter(streams: streams))
                return try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(wrappingChannelSynchronously: stream)
            }
        }
        do {
            status.setGateway(try await peer.get())
        } catch {
            channel.close(promise: nil)
            throw error
        }
        status.polled()
        status.setLinked(true)
        defer { status.setLinked(false) }
        logger.info("linked to gateway", metadata: ["node.gateway": "\(endpoint)"])
        // The link's streams are taken and answered on its event loop (its streams' channels share it), and so is
        // every task below: in the runtime's pool, each new stream woke a pool thread to take it and a write to the
        // loop's eventfd to start its task, and each hand-off between the loop and a task another thread switch.
        try await withTaskExecutorPreference(EventLoopExecutor(channel.eventLoop)) {
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { await watch(channel) }
                for try await stream in multiplexer.inbound {
                    status.polled()
                    group.addTask { await responder.handle(value: stream, logger: logger) }
                }
                group.cancelAll()
            }
        }
        logger.info("gateway link closed", metadata: ["node.gateway": "\(endpoint)"])
    }

    /// Closes the link when the gateway stops sending anything (it polls at least every few seconds), or when
    /// draining is over.
    ///
    /// An idle node sleeps until the watchdog's deadline (the last poll plus `linkTimeout`) or until its state changes
    /// (draining, a refusal): a volunteer's idle machine should not wake ten times a second for nothing. Draining is
    /// short and waits on in-flight counts, which have no event: it looks every 100 ms.
    private func watch(_ channel: any Channel) async {
        let clock = ContinuousClock()
        var drainStarted: ContinuousClock.Instant?
        var handedOverAt: ContinuousClock.Instant?
        while !Task.isCancelled {
            if status.draining {
                try? await Task.sleep(for: .milliseconds(100))
            } else {
                let status = self.status
                await status.changes.wait(until: status.lastPoll + configuration.linkTimeout + .milliseconds(10)) {
                    status.draining || status.hasRefusal
                }
            }
            if status.draining {
                let started = drainStarted ?? clock.now
                drainStarted = started
                // The gateway must have seen "draining" (its pending poll answers at once) before the link goes.
                let told = status.drainingReported || clock.now - started >= .seconds(2)
                // Nothing in flight, and every answer's last part written: an engine's request leaves the load when
                // it ends, before its stream's trailers (the receipt, a handover) are written, and a link closed in
                // between lost them (the gateway saw the stream break, and no receipt).
                let answered = status.load.inFlight == 0 && inFlight.isEmpty
                let idle = told && answered
                if idle {
                    channel.close(promise: nil)
                    return
                }
                if clock.now - started >= configuration.drainTimeout {
                    // Streams still under way are handed over (the gateway continues them elsewhere) rather than cut;
                    // they end at once, with their receipts, and the link goes when they have or shortly after.
                    if handedOverAt == nil, inFlight.handOverStreams() > 0 {
                        logger.info("drain timeout: handing the streams under way over to the gateway")
                        handedOverAt = clock.now
                        continue
                    }
                    if answered || clock.now - (handedOverAt ?? started) >= .seconds(5) || handedOverAt == nil {
                        channel.close(promise: nil)
                        return
                    }
                }
            } else if status.hasRefusal {
                channel.close(promise: nil)
                return
            } else if status.sinceLastPoll > configuration.linkTimeout {
                logger.warning("gateway stopped polling; reconnecting", metadata: ["node.link_timeout": "\(configuration.linkTimeout)"])
                channel.close(promise: nil)
                return
            }
        }
    }

    /// 0.5 s doubling to 30 s, with ±25 % jitter so nodes of a restarted gateway do not all dial at once.
    static func backoff(failures: Int) -> Duration {
        let base = min(30.0, 0.5 * Double(1 << min(max(failures, 0), 6)))
        return .milliseconds(Int(base * Double.random(in: 0.75...1.25) * 1000))
    }

    /// A failure in words an owner can act on.
    static func explain(_ error: any Error, endpoint: JoinAddress.Endpoint, pin: JoinAddress.Pin) -> String {
        if let tls = error as? NIOSSLError, case .handshakeFailed = tls {
            let proof =
                switch pin {
                case .gateway(let id): "the key \(id.short)…"
                case .network(let id): "membership of the network \(id.short)…"
                }
            return "TLS handshake failed: the gateway at \(endpoint) did not prove \(proof) from the join string, or refused this node (\(tls))"
        }
        return "\(error)"
    }
}
