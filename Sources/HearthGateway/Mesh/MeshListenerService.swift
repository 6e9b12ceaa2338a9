import Foundation
import HearthCore
import HearthMesh
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import ServiceLifecycle

/// Accepts the links nodes dial: TLS 1.3 with the gateway's key, the node's key proven in the same handshake,
/// then HTTP/2 with the gateway as the client. The NodeID is the proven key's; no message can name another.
///
/// For each link it polls the node's report (a long poll that doubles as keepalive) and keeps the registry
/// current. A link that closes, or a node that stops answering, leaves the registry at once.
struct MeshListenerService: Service {
    let configuration: GatewayConfiguration
    let credentials: LinkCredentials
    let links: NodeLinks
    let registry: NodeRegistry
    let admission: Admission
    /// The network this gateway belongs to, and the links its other gateways dialed to it.
    var network: NodeID? = nil
    var peers: NodeLinks? = nil
    let logger: Logger
    let onListening: @Sendable (Int) async -> Void

    private typealias Accepted = (
        channel: any Channel, multiplexer: LinkMultiplexer, peer: EventLoopFuture<NodeID>, activity: LinkActivity, roundTrip: LinkRoundTrip
    )

    func run() async throws {
        let context = try NIOSSLContext(configuration: LinkTLS.configuration(credentials: credentials, role: .server))
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.meshHost, port: configuration.meshPort) { channel in
                channel.eventLoop.makeCompletedFuture { () -> Accepted in
                    let sync = channel.pipeline.syncOperations
                    let activity = LinkActivity()
                    try sync.addHandler(activity)
                    try sync.addHandler(NIOSSLServerHandler(context: context, customVerificationCallback: LinkTLS.verifier(pin: .anyIdentity)))
                    let handshake = LinkHandshakeHandler(eventLoop: channel.eventLoop)
                    try sync.addHandler(handshake)
                    try sync.addHandler(LinkFlushCoalescer())
                    // Nodes are HTTP/2 servers on this connection; a stream they open is refused.
                    let multiplexer = try sync.configureAsyncHTTP2Pipeline(mode: .client, configuration: LinkHTTP2.configuration) { stream in
                        stream.close()
                    }
                    return (channel, multiplexer, handshake.peer, activity, try LinkRoundTrip.add(to: channel))
                }
            }
        let port = server.channel.localAddress?.port ?? 0
        logger.info(
            "mesh listening",
            metadata: ["mesh.port": "\(port)", "gateway.id": "\(credentials.id)"]
        )
        await onListening(port)
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { inbound in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await accepted in inbound {
                        group.addTask { await serve(accepted) }
                    }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
            for link in links.all() + (peers?.all() ?? []) { link.close() }
        }
    }

    /// Runs one link from handshake to close.
    private func serve(_ accepted: Accepted) async {
        let remote = accepted.channel.remoteAddress.map { "\($0)" } ?? "?"
        let nodeID: NodeID
        do {
            nodeID = try await accepted.peer.get()
        } catch {
            logger.info("link refused in the TLS handshake", metadata: ["mesh.remote": "\(remote)", "error": "\(error)"])
            accepted.channel.close(promise: nil)
            return
        }
        let link = NodeLink(
            nodeID: nodeID,
            channel: accepted.channel,
            multiplexer: accepted.multiplexer,
            activity: accepted.activity,
            roundTrip: accepted.roundTrip
        )
        if let network, let peers, await Self.isPeer(accepted.channel, id: nodeID, network: network) {
            if let previous = peers.insert(link) { previous.close() }
            logger.info("peer gateway linked", metadata: ["gateway.peer": "\(nodeID.short)", "mesh.remote": "\(remote)"])
            try? await accepted.channel.closeFuture.get()
            _ = peers.remove(link)
            logger.info("peer gateway link closed", metadata: ["gateway.peer": "\(nodeID.short)"])
            return
        }
        let account: NodeID?
        do {
            account = try await admit(link, address: accepted.channel.remoteAddress?.ipAddress)
        } catch {
            logger.info("node refused", metadata: ["node.id": "\(nodeID.short)", "mesh.remote": "\(remote)", "error": "\(error)"])
            link.close()
            return
        }
        if let previous = links.insert(link) {
            logger.info("node linked again; closing its old link", metadata: ["node.id": "\(nodeID.short)"])
            previous.close()
        }
        logger.info("node linked", metadata: ["node.id": "\(nodeID.short)", "mesh.remote": "\(remote)"])
        // The node leaves the registry the moment its link closes, on the link's event loop, not when this task next
        // runs: news of the loss can otherwise come back around through another node first (a pool's head, whose
        // relay to this node was cut, reports its engine's death) and be taken for an incident of that node's.
        let (links, registry) = (self.links, self.registry)
        accepted.channel.closeFuture.whenComplete { _ in
            if links.remove(link) { registry.remove(nodeID) }
        }
        do {
            try await poll(link, account: account)
        } catch {
            logger.info("node link ended", metadata: ["node.id": "\(nodeID.short)", "error": "\(error)"])
        }
        link.close()
        try? await accepted.channel.closeFuture.get()
        // A report read just before the close may have put the node back: with no link of its left, it goes.
        if links.link(to: nodeID) == nil {
            registry.remove(nodeID)
            logger.info("node left", metadata: ["node.id": "\(nodeID.short)"])
        }
    }

    /// Whether the peer of `channel` proved it is a gateway of `network`: its certificate carries the network key's
    /// signature over its own key (which the handshake proved).
    static func isPeer(_ channel: any Channel, id: NodeID, network: NodeID) async -> Bool {
        let certificate = try? await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
        }.get()
        guard let certificate else { return false }
        return LinkCredentials.membership(of: certificate)?.proves(gateway: id, in: network) == true
    }

    /// Reads the node's credentials and asks `admission`. A refused node is told why before its link closes.
    /// - Returns: the account the node serves for, if it is certified.
    private func admit(_ link: NodeLink, address: String?) async throws -> NodeID? {
        let hello = try await withDeadline(configuration.linkAnswerTimeout) {
            let response = try await link.send(.GET, LinkProtocol.Path.hello)
            let body = try await response.body.collect(upTo: 64 << 10)
            guard response.head.status == .ok else { throw LinkPollError(status: Int(response.head.status.code)) }
            return try JSONDecoder().decode(LinkHello.self, from: Data(buffer: body))
        }
        do {
            return try await admission.admit(link.nodeID, hello: hello, address: address)
        } catch let refusal as LinkRefusal {
            let body = ByteBuffer(bytes: try JSONEncoder().encode(refusal))
            _ = try? await withDeadline(.seconds(2)) {
                let response = try await link.send(.POST, LinkProtocol.Path.refused, headers: ["content-type": "application/json"], body: body)
                _ = try await response.body.collect(upTo: 1024)
            }
            throw refusal
        }
    }

    /// Polls the node's report until the link fails. Each answer refreshes the registry entry.
    private func poll(_ link: NodeLink, account: NodeID?) async throws {
        // A node answers a poll at the latest after `hold`; keep that well inside the TTL so an idle node never
        // looks silent.
        let hold = min(configuration.linkPollInterval, configuration.nodeTTL / 3)
        var revision: String?
        while !Task.isCancelled {
            registry.touch(link.nodeID)
            // A PING beside every poll: its answer, which the node's HTTP/2 stack sends before it reads the poll, is
            // what the pool planner weighs nodes by.
            let nodeID = link.nodeID
            link.roundTrip?.measure().whenSuccess { [registry] in registry.noteRoundTrip(of: nodeID, $0) }
            var headers: HTTPHeaders = [LinkProtocol.Header.waitMilliseconds: String(Int(hold.milliseconds))]
            if let revision { headers.add(name: LinkProtocol.Header.after, value: revision) }
            let request = headers
            // Late is not dead while the node's bytes keep coming (a saturated machine answers late).
            let answerTimeout = configuration.linkAnswerTimeout
            let stillSending: @Sendable () -> Bool = { link.activity?.heard(within: answerTimeout) == true }
            var report = try await withDeadline(hold + answerTimeout, extendedWhile: stillSending) {
                let response = try await link.send(.GET, LinkProtocol.Path.report, headers: request)
                let body = try await response.body.collect(upTo: 1 << 20)
                guard response.head.status == .ok else { throw LinkPollError(status: Int(response.head.status.code)) }
                return try JSONDecoder().decode(NodeReport.self, from: Data(buffer: body))
            }
            // A report out of bounds ends the link: the node is broken or hostile, and its numbers are not routed on.
            try report.validate()
            // Only allowlisted files are routed to: a model under an unknown id or another hash is dropped.
            let allowed = report.models.filter { configuration.catalog.allows($0.id, sha256: $0.sha256) }
            if allowed.count < report.models.count {
                let offList = report.models.filter { !allowed.contains($0) }
                report.models = allowed
                if revision != report.revision {
                    logger.warning(
                        "node reports models off the allowlist; not routing to them",
                        metadata: ["node.id": "\(link.nodeID.short)", "node.models": "\(offList.map { "\($0.id)@\($0.sha256.hex.prefix(12))" })"]
                    )
                }
            }
            let joined = registry.upsert(NodeAnnouncement(nodeID: link.nodeID, account: account, report: report))
            if joined, let refused = try? await admission.database.refusedReceiptCount(of: link.nodeID), refused > 0 {
                registry.seedRefusedReceipts(link.nodeID, count: refused)
            }
            if joined, let checks = try? await admission.database.spotChecks(of: link.nodeID, limit: 20) {
                registry.seedSpotChecks(link.nodeID, passed: checks.reversed().filter { $0.result != "inconclusive" }.map { $0.result == "pass" })
            }
            if joined || revision != report.revision {
                logger.info(
                    joined ? "node joined" : "node changed",
                    metadata: [
                        "node.id": "\(link.nodeID.short)", "node.name": "\(report.name)", "node.state": "\(report.revision)",
                    ]
                )
            }
            revision = report.revision
        }
    }
}

/// The node answered a report poll with an error status.
struct LinkPollError: Error, CustomStringConvertible {
    var status: Int
    var description: String { "the node answered the report poll with HTTP \(status)" }
}

/// Runs `body`, cancelling it and throwing `LinkError.timedOut` once `limit` has passed; while `extendedWhile` says so
/// when it is asked (at `limit`, then every `limit` after), the deadline moves on by `limit`.
package func withDeadline<T: Sendable>(
    _ limit: Duration,
    extendedWhile stillAlive: @escaping @Sendable () -> Bool = { false },
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            repeat { try await Task.sleep(for: limit) } while stillAlive()
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw LinkError.timedOut }
        return value
    }
}
