public import HearthCore
public import Hummingbird
public import NIOCore

/// The request context of the gateway: Hummingbird's core storage plus the peer's address.
public struct GatewayRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The direct peer (which may be a trusted proxy).
    public let remoteAddress: SocketAddress?
    /// The address the gateway attributes the request to, after trusted-proxy handling.
    public var clientAddress: String = "unknown"
    /// Who the request comes from, once `AuthMiddleware` has read its bearer credential.
    public var caller: Caller = .anonymous

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}
