public import HearthCore
import HearthMesh
public import Logging
public import NIOCore
import NIOPosix

/// Waits until every write handed to `channel` so far is on the wire: closing right after `finish()` would drop
/// writes still queued in the channel.
func flushed(_ channel: any Channel) async throws {
    try await channel.writeAndFlush(ByteBuffer())
}

/// A TCP port on this machine whose every connection becomes a tunnel to `service` on `node`: how a local program
/// (a llama-server with `--rpc`, a test, the benchmark) reaches a service behind a node's link.
public final class TunnelForward: Sendable {
    private let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
    private let task: Task<Void, Never>

    /// The port it listens on.
    public var port: Int { server.channel.localAddress?.port ?? 0 }

    /// Listens on `host:port` (loopback, any free port by default) and forwards each connection.
    public init(
        links: NodeLinks,
        node: NodeID,
        service: String,
        host: String = "127.0.0.1",
        port: Int = 0,
        logger: Logger
    ) async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
        self.server = server
        task = Task {
            try? await server.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            group.addTask {
                                do {
                                    try await Self.pipe(connection, to: try await links.openTunnel(to: node, service: service))
                                } catch {
                                    logger.info(
                                        "tunnel ended",
                                        metadata: ["node.id": "\(node.short)", "tunnel.service": "\(service)", "error": "\(error)"]
                                    )
                                }
                            }
                        }
                    } catch {}
                }
            }
        }
    }

    /// Stops listening; tunnels already open end when their connections do.
    public func close() {
        server.channel.close(promise: nil)
        task.cancel()
    }

    /// Copies both ways until the local side and the service have both finished.
    static func pipe(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, to tunnel: LinkTunnel) async throws {
        defer { tunnel.close() }
        try await connection.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup { group in
                group.addTask {
                    for try await chunk in inbound { try await tunnel.write(chunk) }
                    try await tunnel.finish()
                }
                while let chunk = try await tunnel.inbound.next() { try await outbound.write(chunk) }
                try await flushed(connection.channel)
                outbound.finish()
                try await group.waitForAll()
            }
        }
    }
}
