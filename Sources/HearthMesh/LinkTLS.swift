package import HearthCore
package import NIOCore
package import NIOHTTP2
package import NIOSSL
import NIOTLS

/// Which peer one end of a link accepts.
package enum LinkPin: Sendable, Equatable {
    /// Exactly this identity: a node pins the gateway from its join string.
    case identity(NodeID)
    /// Any gateway the network with this key id certified (its certificate carries a valid `NetworkMembership`):
    /// a node whose join string names a network.
    case network(NodeID)
    /// Any Ed25519 identity: the gateway accepts any node and reads which one it is after the handshake.
    case anyIdentity
}

/// TLS for links: TLS 1.3 only, Ed25519 certificates only, ALPN `h2`, and the peer pinned by key.
///
/// The pin is checked in a custom verification callback. NIOSSL only calls that callback when certificate
/// verification is on, so the configuration uses `.noHostnameVerification`: with `.none` the callback is skipped
/// and any peer is accepted (the test suite shows both).
package enum LinkTLS {
    package enum Role: Sendable {
        /// The gateway, which accepts links.
        case server
        /// A node, which dials out.
        case client
    }

    /// The TLS configuration for one end of a link.
    package static func configuration(credentials: LinkCredentials, role: Role) -> TLSConfiguration {
        var tls: TLSConfiguration
        switch role {
        case .server:
            tls = .makeServerConfiguration(certificateChain: [.certificate(credentials.certificate)], privateKey: .privateKey(credentials.privateKey))
        case .client:
            tls = .makeClientConfiguration()
            tls.certificateChain = [.certificate(credentials.certificate)]
            tls.privateKey = .privateKey(credentials.privateKey)
        }
        tls.minimumTLSVersion = .tlsv13
        tls.maximumTLSVersion = .tlsv13
        tls.signingSignatureAlgorithms = [.ed25519]
        tls.verifySignatureAlgorithms = [.ed25519]
        tls.certificateVerification = .noHostnameVerification
        tls.trustRoots = .certificates([])
        tls.applicationProtocols = ["h2"]
        return tls
    }

    /// The verification callback enforcing `pin`: the peer must present exactly one Ed25519 certificate whose key
    /// is the pinned identity (or any Ed25519 key for `.anyIdentity`). CA chains and dates play no part.
    package static func verifier(pin: LinkPin) -> NIOSSLCustomVerificationCallback {
        { certificates, promise in
            guard certificates.count == 1, let peer = LinkCredentials.peerID(of: certificates[0]) else {
                promise.succeed(.failed)
                return
            }
            switch pin {
            case .anyIdentity: promise.succeed(.certificateVerified)
            case .identity(let expected): promise.succeed(peer == expected ? .certificateVerified : .failed)
            case .network(let network):
                let member = LinkCredentials.membership(of: certificates[0])?.proves(gateway: peer, in: network) == true
                promise.succeed(member ? .certificateVerified : .failed)
            }
        }
    }
}

/// Reports the peer's identity once the TLS handshake has completed, or fails if the connection ends first.
/// Add it right after the TLS handler.
package final class LinkHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = NIOAny
    private let promise: EventLoopPromise<NodeID>
    private var settled = false

    /// The proven identity of the peer.
    package var peer: EventLoopFuture<NodeID> { promise.futureResult }

    package init(eventLoop: any EventLoop) {
        self.promise = eventLoop.makePromise(of: NodeID.self)
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            let certificate =
                (try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate)
                ?? (try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate)
            if let certificate, let id = LinkCredentials.peerID(of: certificate) {
                settle(.success(id))
            } else {
                settle(.failure(LinkError.noPeerIdentity))
                context.close(promise: nil)
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        settle(.failure(error))
        context.fireErrorCaught(error)
    }

    package func channelInactive(context: ChannelHandlerContext) {
        settle(.failure(LinkError.closed))
        context.fireChannelInactive()
    }

    /// A channel torn down before it was ever active (a refused dial) reaches neither of the events above: the
    /// promise must still be settled, or NIO traps on a leaked promise and whoever waits on `peer` waits for ever.
    package func handlerRemoved(context: ChannelHandlerContext) {
        settle(.failure(LinkError.closed))
    }

    private func settle(_ result: Result<NodeID, any Error>) {
        guard !settled else { return }
        settled = true
        promise.completeWith(result)
    }
}

/// Why a link or a stream on it failed.
package enum LinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The TLS handshake finished without a usable Ed25519 peer certificate.
    case noPeerIdentity
    /// The link closed.
    case closed
    /// The peer did not answer in time.
    case timedOut
    /// The stream ended before a complete response.
    case truncated
    /// A body was larger than the reader allowed.
    case tooLarge

    package var description: String {
        switch self {
        case .noPeerIdentity: "the peer proved no Ed25519 identity"
        case .closed: "the link closed"
        case .timedOut: "the peer did not answer in time"
        case .truncated: "the stream ended before the response was complete"
        case .tooLarge: "the response was larger than allowed"
        }
    }
}

/// HTTP/2 settings for links. A link carries many streams at once (every request to a node, tunnels, and the
/// gateway's report poll and cancels beside them), so it allows 16,384 concurrent streams: at 1,000, a link carrying
/// 1,000 held streams kept the report poll waiting for a free one until its deadline closed the link, cutting every
/// stream on it. Only the gateway opens streams on a link, and each request stream was admitted by it first. Its
/// windows are larger than HTTP/2's 64 KiB default so a tunnel is not limited to one small window per round trip:
/// 1 MiB per stream, 8 MiB for the connection.
package enum LinkHTTP2 {
    package static var configuration: NIOHTTP2Handler.Configuration {
        var configuration = NIOHTTP2Handler.Configuration()
        configuration.connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: 16_384),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            HTTP2Setting(parameter: .maxFrameSize, value: 1 << 16),
            HTTP2Setting(parameter: .maxHeaderListSize, value: 1 << 16),
        ]
        configuration.connection.targetWindowSize = 8 << 20
        configuration.stream.targetWindowSize = 1 << 20
        configuration.stream.outboundBufferSizeHighWatermark = 256 << 10
        configuration.stream.outboundBufferSizeLowWatermark = 64 << 10
        return configuration
    }
}
