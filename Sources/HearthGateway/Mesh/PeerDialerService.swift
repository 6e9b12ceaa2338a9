import Foundation
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

/// Dials every other live gateway of this network (from the `gateways` directory) and serves the requests it
/// forwards on that link with this gateway's own API, as a node serves its gateway's streams: the requests a peer
/// cannot serve itself (no node of its own has the model) are answered here, metered here (the caller's credential
/// travels with the request; the database is shared) and credited in this gateway's ledger chain.
struct PeerDialerService: Service {
    let database: GatewayDatabase
    let id: NodeID
    let network: NodeID
    let credentials: LinkCredentials
    let responder: GatewayResponder
    let interval: Duration
    let logger: Logger

    func run() async throws {
        let context = try NIOSSLContext(configuration: LinkTLS.configuration(credentials: credentials, role: .client))
        let dialed = Dialed()
        let ttl = GatewayDirectoryService.ttl(for: interval)
        await withDiscardingTaskGroup { group in
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                let live = (try? await database.liveGateways(network: network.rawValue, since: Date().timeIntervalSince1970 - ttl)) ?? []
                for peer in live where peer.id != id.rawValue {
                    let fresh = dialed.ids.withLock { $0.insert(peer.id).inserted }
                    guard fresh else { continue }
                    group.addTask {
                        defer { _ = dialed.ids.withLock { $0.remove(peer.id) } }
                        do {
                            try await serve(peer, context: context)
                        } catch {
                            logger.debug("peer link failed", metadata: ["gateway.peer": "\(peer.id.prefix(12))", "error": "\(error)"])
                        }
                    }
                }
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            }
            group.cancelAll()
        }
    }

    /// The peers with a link up or being dialed.
    final class Dialed: Sendable {
        let ids = Mutex<Set<String>>([])
    }

    /// Dials `peer`'s mesh pinned to the network and serves its streams until the link closes.
    private func serve(_ peer: GatewayRecord, context: NIOSSLContext) async throws {
        let endpoint = try JoinAddress(parsing: "\(peer.mesh)#net:\(network.rawValue)").endpoints[0]
        let channelResponder = LinkResponder.channel(
            respond: { request, channel in
                // As Hummingbird's server does for every request: the request id rides in the logger (`context.id`).
                var requestLogger = logger
                requestLogger[metadataKey: "hb.request.id"] = .stringConvertible(RequestID())
                let context = GatewayRequestContext(source: .init(channel: channel, logger: requestLogger), viaPeer: true)
                return try await responder.respond(to: request, context: context)
            },
            failure: { error in
                OpenAIError.response(for: APIFailure(.server, "The gateway failed: \(error)"), headers: [:], shape: .openAI)
            }
        )
        let (channel, multiplexer, _) = try await LinkDial.connect(
            host: endpoint.host,
            port: endpoint.port,
            context: context,
            pin: .network(network)
        ) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTPServerCodec())
                return try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(wrappingChannelSynchronously: stream)
            }
        }
        logger.info("linked to peer gateway", metadata: ["gateway.peer": "\(peer.id.prefix(12))", "mesh": "\(peer.mesh)"])
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                for try await stream in multiplexer.inbound {
                    group.addTask { await channelResponder.handle(value: stream, logger: logger) }
                }
            }
        } onCancel: {
            channel.close(promise: nil)
        }
        logger.info("peer gateway link closed", metadata: ["gateway.peer": "\(peer.id.prefix(12))"])
    }
}
