import Foundation
import HearthCore
import Hummingbird
import NIOFoundationEssentialsCompat

/// `GET /api/pools` lists the pools; `POST /api/pools {model, nodes?}` creates one and `DELETE /api/pools/{id}`
/// stops one, for operators only: a caller logged in with the gateway's own key, or an account named with
/// `--operator`. Never anonymous.
struct PoolsController {
    let pools: PoolReconciler?
    let operators: Set<NodeID>

    private struct CreateBody: Decodable {
        var model: String
        var nodes: [String]?
    }

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/pools") { _, _ in
            let views = pools?.views() ?? []
            let data = try JSONEncoder().encode(["pools": views])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.post("/api/pools") { request, context in
            try authorize(context)
            guard let pools else { throw Self.noMesh }
            let body = try await request.body.collect(upTo: 64 << 10)
            guard let fields = try? JSONDecoder().decode(CreateBody.self, from: body), let model = ModelID(fields.model) else {
                throw APIFailure(.invalidRequest, "The body must be JSON with a 'model' string and optional 'nodes' (node ids).", param: "model")
            }
            var nodes: [NodeID]?
            if let listed = fields.nodes {
                nodes = try listed.map { text in
                    guard let id = NodeID(text) else {
                        throw APIFailure(.invalidRequest, "'\(text.prefix(80))' is not a node id (64 lowercase hex digits).", param: "nodes")
                    }
                    return id
                }
            }
            let id = try await pools.create(model: model, nodes: nodes)
            let data = try JSONEncoder().encode(["id": id.rawValue])
            return Response(status: .created, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.delete("/api/pools/{id}") { _, context in
            try authorize(context)
            guard let pools else { throw Self.noMesh }
            guard let id = PoolID(context.parameters.get("id") ?? ""), await pools.stop(id) else {
                throw APIFailure(.notFound, "There is no pool '\(context.parameters.get("id") ?? "")'.", param: "id", code: "pool_not_found")
            }
            let data = try JSONEncoder().encode(["id": id.rawValue, "state": "stopping"])
            return Response(status: .accepted, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }

    /// Operators only.
    private func authorize(_ context: GatewayRequestContext) throws(APIFailure) {
        guard let account = context.caller.account else {
            throw APIFailure(.authentication, "Pools are controlled by the gateway's operators: log in first.", code: "login_required")
        }
        guard operators.contains(account) else {
            throw APIFailure(.permission, "Only the gateway's operators control pools.", code: "not_an_operator")
        }
    }

    static let noMesh = APIFailure(.notSupported, "This gateway runs no mesh, so it has no pools.", code: "pools_unavailable")
}
