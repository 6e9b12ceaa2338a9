import Foundation
import HearthCore
import Hummingbird
import NIOCore

/// The ledger, for anyone to audit: `GET /api/ledger/entries?after=<seq>&limit=<n>[&chain=<gateway id>]` pages
/// through credited receipts in order, each with the gateway's countersigned entry (base64url COSE_Sign1) and its
/// hash; `GET /api/ledger/head[?chain=…]` gives the count and last hash, signed by this gateway for its own chain
/// (another gateway's chain, in a shared database, has only that gateway to sign its head: `signed` is null);
/// `GET /api/ledger/chains` lists every gateway's chain. The chain defaults to this gateway's own.
struct LedgerController {
    let database: GatewayDatabase
    let gatewayKey: IdentityKey

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/ledger/entries") { request, _ in
            let after = try QueryParameter.integer(request, "after", default: 0, in: 0...Int64.max)
            let limit = try QueryParameter.integer(request, "limit", default: 100, in: 1...1000)
            let chain = try Self.chain(request, own: gatewayKey.nodeID)
            let rows = try await database.ledger(after: after, limit: Int(limit), chain: chain.rawValue).map { row -> JSONValue in
                [
                    "chain": .string(row.chain), "seq": .integer(row.seq), "request_id": .string(row.requestID), "node": .string(row.nodeID),
                    "account": row.account.map { .string($0) } ?? .null, "consumer": .string(row.consumer), "model": .string(row.model),
                    "prompt_tokens": .integer(Int64(row.promptTokens)), "completion_tokens": .integer(Int64(row.completionTokens)),
                    "hash": .string(Hex.encode(row.hash)), "credited_at": .string(row.createdAt.formatted(.iso8601)),
                    "entry": .string(SignedToken.base64url(row.entry)),
                ]
            }
            return try jsonResponse(["data": .array(rows)])
        }
        router.get("/api/ledger/head") { request, _ in
            let chain = try Self.chain(request, own: gatewayKey.nodeID)
            let (seq, hash) = try await database.ledgerHead(chain: chain.rawValue)
            let signed: JSONValue =
                chain == gatewayKey.nodeID
                ? .string(SignedToken.base64url(Data(try LedgerHead(seq: seq, hash: hash, gateway: chain, at: Date()).signed(by: gatewayKey))))
                : .null
            return try jsonResponse([
                "seq": .integer(seq), "hash": .string(Hex.encode(hash)), "gateway": .string(chain.rawValue), "signed": signed,
            ])
        }
        router.get("/api/ledger/chains") { _, _ in
            let chains = try await database.ledgerChains().map { chain -> JSONValue in
                [
                    "gateway": .string(chain.chain), "entries": .integer(chain.entries), "hash": .string(Hex.encode(chain.hash)),
                    "own": .bool(chain.chain == gatewayKey.nodeID.rawValue),
                ]
            }
            return try jsonResponse(["gateway": .string(gatewayKey.nodeID.rawValue), "data": .array(chains)])
        }
    }

    /// The `chain` parameter: a gateway id, by default this gateway's own.
    static func chain(_ request: Request, own: NodeID) throws(APIFailure) -> NodeID {
        guard let text = request.uri.queryParameters["chain"].map(String.init) else { return own }
        guard let chain = NodeID(text) else {
            throw APIFailure(.invalidRequest, "'chain' must be a gateway id (64 hex characters).", param: "chain")
        }
        return chain
    }
}
