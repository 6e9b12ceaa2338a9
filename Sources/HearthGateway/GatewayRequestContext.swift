import HearthCore
package import Hummingbird
package import NIOCore

/// The request context of the gateway: Hummingbird's core storage plus the peer's address.
package struct GatewayRequestContext: RequestContext, RemoteAddressRequestContext {
    package var coreContext: CoreRequestContextStorage
    /// The direct peer (which may be a trusted proxy).
    package let remoteAddress: SocketAddress?
    /// The address the gateway attributes the request to, after trusted-proxy handling.
    var clientAddress: String = "unknown"
    /// Who the request comes from, once `AuthMiddleware` has read its bearer credential.
    var caller: Caller = .anonymous
    /// Whether another gateway of the network forwarded the request over the peer link this gateway dialed to it.
    /// Set only by that link's responder (`PeerDialerService`), never from anything the request says.
    let viaPeer: Bool
    /// The request's JSON body, when a middleware has already read it (`PeerForwardMiddleware`, deciding whether to
    /// forward), so that the route does not parse it again.
    var body: JSONValue?
    /// The connection's watch for its client going away, while a node is waited for (`ClientWatch`).
    let clientWatch: ClientWatch?

    package init(source: ApplicationRequestContextSource) {
        self.init(source: source, viaPeer: false)
    }

    init(source: ApplicationRequestContextSource, viaPeer: Bool) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
        self.viaPeer = viaPeer
        self.clientWatch = ClientWatch.current
    }
}
