import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat

/// The gateway's pool instructions and the pool byte streams, on the link only (a node never listens).
///
/// - `PUT /link/v1/pool/{id}` with a `PoolAssignment`: serve this node's part; `DELETE`: drop it.
/// - `POST /link/v1/pool/{id}/rpc`: a byte stream to this node's rpc-server for the pool: refused unless the node
///   is a member of that pool now and its rpc-server is up.
/// - `POST /link/v1/pool/{id}/peer/{index}`: held until the head's engine connects to member `index`'s loopback
///   port, then that connection's byte stream.
struct PoolController {
    let worker: PoolWorker?

    func addRoutes(to router: Router<BasicRequestContext>) {
        let prefix = LinkProtocol.Path.poolPrefix
        router.put(RouterPath(prefix + "{pool}")) { request, context in
            guard let worker else { return Self.notLending }
            guard let pool = PoolID(context.parameters.get("pool") ?? "") else { return Self.badID }
            let body = try await request.body.collect(upTo: 1 << 20)
            guard let assignment = try? JSONDecoder().decode(PoolAssignment.self, from: body), assignment.pool == pool else {
                return EngineProxyController.error(
                    APIFailure(.invalidRequest, "The body must be a pool assignment for \(pool).", code: "invalid_assignment")
                )
            }
            do throws(PoolRefusal) {
                try await worker.assign(assignment)
            } catch {
                context.logger.warning("pool assignment refused", metadata: ["pool.id": "\(pool)", "error": "\(error.failure.message)"])
                return EngineProxyController.error(error.failure)
            }
            return Response(status: .accepted)
        }
        router.delete(RouterPath(prefix + "{pool}")) { _, context in
            guard let worker else { return Self.notLending }
            guard let pool = PoolID(context.parameters.get("pool") ?? "") else { return Self.badID }
            await worker.drop(pool)
            return Response(status: .noContent)
        }
        router.post(RouterPath(prefix + "{pool}/rpc")) { request, context in
            guard let worker else { return Self.notLending }
            guard let pool = PoolID(context.parameters.get("pool") ?? "") else { return Self.badID }
            guard let port = worker.memberPort(of: pool) else {
                return EngineProxyController.error(
                    APIFailure(.notFound, "This node serves no rpc-server for \(pool) now.", code: "not_a_member")
                )
            }
            do {
                return TunnelController.splice(request.body, with: try await TunnelController.connect(port: port))
            } catch {
                return EngineProxyController.error(APIFailure(.upstream, "The rpc-server for \(pool) is not reachable.", code: "service_unreachable"))
            }
        }
        router.post(RouterPath(prefix + "{pool}/peer/{index}")) { request, context in
            guard let worker else { return Self.notLending }
            guard let pool = PoolID(context.parameters.get("pool") ?? "") else { return Self.badID }
            guard let index = context.parameters.get("index", as: Int.self), let peer = worker.peerPort(of: pool, index: index) else {
                return EngineProxyController.error(APIFailure(.notFound, "This node heads no pool \(pool) with that member.", code: "not_a_head"))
            }
            // Held (the gateway keeps one such stream parked per member) until the engine connects; a reset of the
            // stream cancels the wait.
            guard let connection = await peer.next() else {
                return EngineProxyController.error(APIFailure(.unavailable, "The head of \(pool) stopped.", code: "head_stopped"))
            }
            return TunnelController.splice(request.body, with: connection)
        }
    }

    static var notLending: Response {
        EngineProxyController.error(APIFailure(.notFound, "This node lends no memory to pools (--pool-memory).", code: "pools_off"))
    }

    static var badID: Response {
        EngineProxyController.error(APIFailure(.invalidRequest, "A pool id is p- and 12 lowercase hex digits.", param: "pool", code: "invalid_pool"))
    }
}
