import Foundation
import HearthCore

/// Token quotas: each caller has a bucket of tokens per hour, sized by its standing (`Reciprocity.quota`), refilled
/// evenly, charged after each request with the tokens it really used. Anonymous callers share their address's
/// bucket at the floor; logged-in users and their API keys share their account's. Buckets are rows in the database
/// (`quota_buckets`), shared by every gateway that uses it; a request is charged in its usage row's transaction.
final class QuotaBook: Sendable {
    let reciprocity: Reciprocity
    let database: GatewayDatabase

    init(reciprocity: Reciprocity, database: GatewayDatabase) {
        self.reciprocity = reciprocity
        self.database = database
    }

    struct Decision: Sendable {
        var allowed: Bool
        /// Tokens per hour for this caller, what is left now, and seconds until the bucket is full again.
        var limit: Int
        var remaining: Int
        var resetSeconds: Int
        var retryAfterSeconds: Int
        var standing: Double
        /// What the request will take from its bucket when it ends (the tokens are filled in then).
        var charge: QuotaCharge
    }

    /// The bucket a caller draws from.
    static func key(for caller: Caller, address: String) -> String {
        caller.account.map { "account:\($0.rawValue)" } ?? "address:\(address)"
    }

    /// Whether the caller may start a request now.
    func check(caller: Caller, address: String, now: Date = Date()) async -> Decision {
        var standing = 0.0
        if let account = caller.account, let balance = try? await database.balance(of: account, reciprocity: reciprocity, now: now) {
            standing = balance.standing
        }
        let quota = reciprocity.quota(standing: standing)
        let rate = quota / 3600
        let key = Self.key(for: caller, address: address)
        let seconds = now.timeIntervalSince1970
        // A bucket the database cannot read counts as full: a storage hiccup must not refuse everyone.
        let stored = try? await database.quotaBucket(key)
        let level = stored.map { QuotaCharge.refilled($0.level, since: $0.updatedAt, to: seconds, perHour: quota) } ?? quota
        return Decision(
            allowed: level >= 1,
            limit: Int(quota.rounded()),
            remaining: max(0, Int(level)),
            resetSeconds: Int(((quota - level) / rate).rounded(.up)),
            retryAfterSeconds: level >= 1 ? 0 : max(1, Int(((1 - level) / rate).rounded(.up))),
            standing: standing,
            charge: QuotaCharge(key: key, tokensPerHour: quota)
        )
    }
}
