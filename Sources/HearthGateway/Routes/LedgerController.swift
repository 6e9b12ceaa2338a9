import Foundation
import HearthCore
import Hummingbird
import NIOCore

/// The ledger, for anyone to audit: `GET /api/ledger/entries?after=<seq>&limit=<n>` pages through credited
/// receipts in order, each with the gateway's countersigned entry (base64url COSE_Sign1) and its hash;
/// `GET /api/ledger/head` gives the count and last hash, signed by the gateway.
struct LedgerController {
    let database: GatewayDatabase
    let gatewayKey: IdentityKey

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/ledger/entries") { request, _ in
            let after = try QueryParameter.integer(request, "after", default: 0, in: 0...Int64.max)
            let limit = try QueryParameter.integer(request, "limit", default: 100, in: 1...1000)
            let rows = try await database.ledger(after: after, limit: Int(limit)).map { row -> JSONValue in
                [
                    "seq": .integer(row.seq), "request_id": .string(row.requestID), "node": .string(row.nodeID),
                    "account": row.account.map { .string($0) } ?? .null, "consumer": .string(row.consumer), "model": .string(row.model),
                    "prompt_tokens": .integer(Int64(row.promptTokens)), "completion_tokens": .integer(Int64(row.completionTokens)),
                    "hash": .string(Hex.encode(row.hash)), "credited_at": .string(row.createdAt.formatted(.iso8601)),
                    "entry": .string(SignedToken.base64url(row.entry)),
                ]
            }
            return try jsonResponse(["data": .array(rows)])
        }
        router.get("/api/ledger/head") { _, _ in
            let (seq, hash) = try await database.ledgerHead()
            let signed = try LedgerHead(seq: seq, hash: hash, gateway: gatewayKey.nodeID, at: Date()).signed(by: gatewayKey)
            return try jsonResponse([
                "seq": .integer(seq), "hash": .string(Hex.encode(hash)), "gateway": .string(gatewayKey.nodeID.rawValue),
                "signed": .string(SignedToken.base64url(Data(signed))),
            ])
        }
    }
}
