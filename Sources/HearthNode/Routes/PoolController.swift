import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat

/// The gateway's pool instructions, on the link only (a node never listens).
///
/// - `PUT /link/v1/pool/{id}` with a `PoolAssignment`: serve this node's part; `DELETE`: drop it.
///
/// The pool's byte streams (`…/rpc`, `…/peer/{index}`) are spliced below the router: see `LinkByteStreams`.
struct PoolController {
    let worker: PoolWorker?

    func addRoutes(to router: Router<BasicRequestContext>) {
        let prefix = LinkProtocol.Path.poolPrefix
        router.put(RouterPath(prefix + "{pool}")) { request, context in
            guard let worker else { return EngineProxyController.error(Self.notLending) }
            guard let pool = PoolID(context.parameters.get("pool") ?? "") else { return EngineProxyController.error(Self.badID) }
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
        router.delete(RouterPath(prefix + "{pool}")) { request, context in
            guard let worker else { return EngineProxyController.error(Self.notLending) }
            guard let pool = PoolID(context.parameters.get("pool") ?? "") else { return EngineProxyController.error(Self.badID) }
            var epoch: Int?
            if let text = request.headers[.init(LinkProtocol.Header.poolEpoch)!] {
                guard let value = Int(text) else { return EngineProxyController.error(Self.badEpoch) }
                epoch = value
            }
            await worker.drop(pool, through: epoch)
            return Response(status: .noContent)
        }
    }

    static let notLending = APIFailure(.notFound, "This node lends no memory to pools (--pool-memory).", code: "pools_off")
    static let badEpoch = APIFailure(.invalidRequest, "A pool epoch is a whole number.", param: "epoch", code: "invalid_epoch")
    static let badID = APIFailure(.invalidRequest, "A pool id is p- and 12 lowercase hex digits.", param: "pool", code: "invalid_pool")
}
