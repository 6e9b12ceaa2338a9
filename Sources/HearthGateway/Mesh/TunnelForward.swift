package import HearthCore
import HearthMesh
package import Logging
import NIOCore
import NIOPosix

/// A TCP port on this machine whose every connection becomes a tunnel to `service` on `node`: how a local program
/// (a test, the benchmark) reaches a service behind a node's link. Each connection is spliced to its link stream on
/// the event loops (`Splice`).
package final class TunnelForward: Sendable {
    private let server: NIOAsyncChannel<SplicedConnection, Never>
    private let task: Task<Void, Never>

    /// The port it listens on.
    package var port: Int { server.channel.localAddress?.port ?? 0 }

    /// Listens on `host:port` (loopback, any free port by default) and forwards each connection.
    package init(
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
                channel.eventLoop.makeCompletedFuture { try SplicedConnection.prepare(channel) }
            }
        self.server = server
        task = Task {
            try? await server.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            group.addTask {
                                do {
                                    try await links.openTunnel(to: node, service: service).splice(with: connection)
                                } catch {
                                    connection.close()
                                    logger.info(
                                        "tunnel refused",
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
    package func close() {
        server.channel.close(promise: nil)
        task.cancel()
    }
}
