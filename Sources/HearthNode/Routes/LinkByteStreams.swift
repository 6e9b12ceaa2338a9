import Foundation
import HTTPTypes
import HearthCore
import HearthMesh
import NIOCore
import NIOHTTPTypes

/// The link's byte-stream routes: each is one full-duplex HTTP/2 stream from the gateway, spliced on the event loop
/// to a connection on this node's loopback (see `ByteStreamSplitter`). Only the gateway opens streams on the link,
/// and only these services and this node's pool work are reachable; nothing else on the node is.
///
/// - `POST /link/v1/tunnel/{service}`: a service the owner listed (`tunnelServices`).
/// - `POST /link/v1/pool/{id}/rpc`: this member's rpc-server for the pool, refused unless the node is a member of
///   that pool now and its rpc-server is up.
/// - `POST /link/v1/pool/{id}/peer/{index}`: held until the head's engine connects to member `index`'s loopback
///   port, then that connection.
struct LinkByteStreams: Sendable {
    /// Service name → loopback port.
    let services: [String: Int]
    let pools: PoolWorker?

    /// Opens the connection, on `eventLoop` where it can (the stream's own loop).
    typealias Opener = @Sendable (_ eventLoop: any EventLoop) async -> Result<SplicedConnection, APIFailure>

    /// What opens the stream `request` asks for, or `nil` when it is not a byte-stream route (the router answers it).
    func route(_ request: HTTPRequest) -> Opener? {
        guard request.method == .post, let target = request.path else { return nil }
        let path = target.prefix { $0 != "?" }
        if path.hasPrefix(LinkProtocol.Path.tunnelPrefix) {
            let name = String(path.dropFirst(LinkProtocol.Path.tunnelPrefix.count))
            return { await tunnel(name, on: $0) }
        }
        guard path.hasPrefix(LinkProtocol.Path.poolPrefix) else { return nil }
        let parts = path.dropFirst(LinkProtocol.Path.poolPrefix.count).split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 2 where parts[1] == "rpc":
            let pool = String(parts[0])
            return { await member(pool, on: $0) }
        case 3 where parts[1] == "peer":
            let pool = String(parts[0])
            let index = Int(parts[2])
            return { _ in await head(pool, index: index) }
        default:
            return nil
        }
    }

    private func tunnel(_ name: String, on eventLoop: any EventLoop) async -> Result<SplicedConnection, APIFailure> {
        guard let port = services[name] else {
            return .failure(APIFailure(.notFound, "This node offers no tunnel service '\(name)'.", param: "service", code: "service_not_found"))
        }
        return await Self.connect(port: port, on: eventLoop, "The tunnel service '\(name)' is not reachable on this node.")
    }

    private func member(_ id: String, on eventLoop: any EventLoop) async -> Result<SplicedConnection, APIFailure> {
        guard let pools else { return .failure(PoolController.notLending) }
        let pool: PoolID
        switch Self.pool(id) {
        case .success(let found): pool = found
        case .failure(let failure): return .failure(failure)
        }
        guard let port = pools.memberPort(of: pool) else {
            return .failure(APIFailure(.notFound, "This node serves no rpc-server for \(pool) now.", code: "not_a_member"))
        }
        return await Self.connect(port: port, on: eventLoop, "The rpc-server for \(pool) is not reachable.")
    }

    private func head(_ id: String, index: Int?) async -> Result<SplicedConnection, APIFailure> {
        guard let pools else { return .failure(PoolController.notLending) }
        let pool: PoolID
        switch Self.pool(id) {
        case .success(let found): pool = found
        case .failure(let failure): return .failure(failure)
        }
        guard let index, let peer = pools.peerPort(of: pool, index: index) else {
            return .failure(APIFailure(.notFound, "This node heads no pool \(pool) with that member.", code: "not_a_head"))
        }
        // Held (the gateway keeps one such stream parked per member) until the engine connects; a reset of the
        // stream cancels the wait.
        guard let connection = await peer.next() else {
            return .failure(APIFailure(.unavailable, "The head of \(pool) stopped.", code: "head_stopped"))
        }
        return .success(connection)
    }

    private static func pool(_ id: String) -> Result<PoolID, APIFailure> {
        guard let pool = PoolID(id) else { return .failure(PoolController.badID) }
        return .success(pool)
    }

    private static func connect(port: Int, on eventLoop: any EventLoop, _ unreachable: String) async -> Result<SplicedConnection, APIFailure> {
        do {
            return .success(try await SplicedConnection.connect(port: port, on: eventLoop))
        } catch {
            return .failure(APIFailure(.upstream, unreachable, code: "service_unreachable"))
        }
    }
}
