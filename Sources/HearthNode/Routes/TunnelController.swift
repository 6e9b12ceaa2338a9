import HearthCore
import Hummingbird
import Logging
import NIOCore
import NIOPosix

/// Byte streams from the gateway to a TCP service this node exposes on 127.0.0.1 for that purpose (for example a
/// `ggml-rpc-server`). `POST /link/v1/tunnel/{service}` is one full-duplex HTTP/2 stream: the request body is copied
/// to the service and the service's bytes come back as the response body, each direction with backpressure.
///
/// Only the services the owner listed are reachable, and only on loopback; nothing else on the node is.
struct TunnelController {
    /// Service name → loopback port.
    let services: [String: Int]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.post(RouterPath(LinkProtocol.Path.tunnelPrefix + "{service}")) { request, context in
            let name = context.parameters.get("service") ?? ""
            guard let port = services[name] else {
                return EngineProxyController.error(
                    APIFailure(.notFound, "This node offers no tunnel service '\(name)'.", param: "service", code: "service_not_found")
                )
            }
            let connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>
            do {
                connection = try await Self.connect(port: port)
            } catch {
                context.logger.warning("tunnel service unreachable", metadata: ["tunnel.service": "\(name)", "error": "\(error)"])
                return EngineProxyController.error(
                    APIFailure(.upstream, "The tunnel service '\(name)' is not reachable on this node.", code: "service_unreachable")
                )
            }
            context.logger.debug("tunnel open", metadata: ["tunnel.service": "\(name)"])
            return Self.splice(request.body, with: connection)
        }
    }

    /// The 200 answer whose body is `connection`'s bytes while `body` is copied to it: gateway → service until the
    /// request ends (then a half-close), service → gateway until the service closes.
    static func splice(_ body: RequestBody, with connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/octet-stream"],
            body: ResponseBody { writer in
                try await connection.executeThenClose { inbound, outbound in
                    try await withThrowingTaskGroup { group in
                        group.addTask {
                            for try await chunk in body { try await outbound.write(chunk) }
                            // Every byte must be on the wire before the half-close (which may become a close).
                            try await connection.channel.writeAndFlush(ByteBuffer())
                            outbound.finish()
                        }
                        for try await chunk in inbound { try await writer.write(chunk) }
                        group.cancelAll()
                    }
                }
                try await writer.finish(nil)
            }
        )
    }

    /// A connection to `port` on 127.0.0.1 that can be half-closed.
    static func connect(port: Int) async throws -> NIOAsyncChannel<ByteBuffer, ByteBuffer> {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(3))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
    }
}
