package import HearthCore
package import NIOCore
package import NIOHTTP2
import NIOPosix
package import NIOSSL

/// The dialing end of a link, as a node dials its gateway and as a gateway of a network dials the others: TCP to
/// `host:port`, TLS 1.3 with `context`'s credentials and the peer checked against `pin` in the handshake, then HTTP/2
/// with the dialer as the *server* (the dialed side opens the streams). Each stream the peer opens is set up by
/// `stream` (the caller's codecs) and comes out of the returned multiplexer's `inbound`.
package enum LinkDial {
    package static func connect<Stream: Sendable>(
        host: String,
        port: Int,
        context: NIOSSLContext,
        pin: LinkPin,
        stream: @escaping @Sendable (any Channel) -> EventLoopFuture<Stream>
    ) async throws -> (channel: any Channel, multiplexer: NIOHTTP2Handler.AsyncStreamMultiplexer<Stream>, peer: EventLoopFuture<NodeID>) {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(
                        NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallback: LinkTLS.verifier(pin: pin))
                    )
                    let handshake = LinkHandshakeHandler(eventLoop: channel.eventLoop)
                    try sync.addHandler(handshake)
                    try sync.addHandler(LinkFlushCoalescer())
                    let multiplexer = try sync.configureAsyncHTTP2Pipeline(
                        mode: .server,
                        configuration: LinkHTTP2.configuration,
                        streamInitializer: stream
                    )
                    return (channel, multiplexer, handshake.peer)
                }
            }
    }
}
