import Foundation
import HearthCore
import Hummingbird

/// `GET /api/reciprocity/standing`: the caller's contribution, consumption, standing, quota and when it refills.
struct ReciprocityController {
    let quotas: QuotaBook

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/reciprocity/standing") { _, context in
            let reciprocity = quotas.reciprocity
            var balance = Reciprocity.Balance()
            if let account = context.caller.account {
                balance = try await quotas.database.balance(of: account, reciprocity: reciprocity)
            }
            let quota = await quotas.check(caller: context.caller, address: context.clientAddress)
            return try jsonResponse([
                "identity": .string(context.caller.consumerName),
                "account": context.caller.account.map { .string($0.rawValue) } ?? .null,
                "contributed_tokens": .integer(Int64(balance.contributed.rounded())),
                "consumed_tokens": .integer(Int64(balance.consumed.rounded())),
                "standing": .integer(Int64(balance.standing.rounded())),
                "quota_tokens_per_hour": .integer(Int64(quota.limit)),
                "remaining_tokens": .integer(Int64(quota.remaining)),
                "full_again_in_seconds": .integer(Int64(quota.resetSeconds)),
                "half_life_days": .number(reciprocity.halfLife / 86400),
                "how_to_earn_more": .string("Serve with a node certified by your account: `hearth keys certify-device`, then `hearth node`."),
            ])
        }
    }
}
