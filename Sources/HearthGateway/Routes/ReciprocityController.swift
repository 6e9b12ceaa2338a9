import Foundation
import HearthCore
import Hummingbird

/// `GET /api/reciprocity/standing`: the caller's contribution, consumption, standing, quota and when it refills.
/// `GET /api/reciprocity/history?days=N`: the caller's account's tokens consumed and contributed per hour (N ≤ 2) or
/// per day (default 30 days), every bucket present, oldest first.
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
        router.get("/api/reciprocity/history") { request, context in
            guard let account = context.caller.account else {
                throw OpenAIError(.authentication, "Log in (or use an API key) to see your account's history.", code: "login_required")
            }
            let days = try QueryParameter.integer(request, "days", default: 30, in: 1...366)
            let bucket: Int64 = days <= 2 ? 3600 : 86400
            let window = BucketWindow(count: Int(days * 86400 / bucket), seconds: bucket)
            let found = try await quotas.database.accountActivity(of: account.rawValue, since: window.since, bucketSeconds: Int(bucket))
            let buckets = window.fill(found, start: \.start) { AccountActivityBucket(start: $0, consumedTokens: 0, contributedTokens: 0) }
            return try CatalogController.response(History(account: account.rawValue, bucketSeconds: Int(bucket), buckets: buckets))
        }
    }
}

struct History: Encodable {
    var account: String
    var bucketSeconds: Int
    var buckets: [AccountActivityBucket]

    enum CodingKeys: String, CodingKey {
        case account
        case bucketSeconds = "bucket_seconds"
        case buckets
    }
}
