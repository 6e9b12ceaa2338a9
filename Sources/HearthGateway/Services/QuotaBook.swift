import Foundation
import HearthCore

/// Token quotas: each caller has a bucket of tokens per hour, sized by its standing (`Reciprocity.quota`), refilled
/// evenly. A request is let in while its bucket holds a token, and takes out the most it may cost then (its prompt,
/// estimated, and its `max_tokens`); when it ends, what it really cost settles the difference. Anonymous callers share
/// their address's bucket at the floor; logged-in users and their API keys share their account's. Buckets are rows in
/// the database (`quota_buckets`), shared by every gateway that uses it; a request is settled in its usage row's
/// transaction.
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

    /// Lets a request that may cost up to `tokens` in when the caller's bucket holds a token, taking `tokens` out of
    /// it (never more than the bucket's size), or refuses it with when to come back.
    func admit(caller: Caller, address: String, reserving tokens: Int, now: Date = Date()) async -> Decision {
        let (standing, charge) = await bucket(of: caller, address: address, now: now)
        let size = charge.tokensPerHour
        let wanted = max(1, min(tokens, Int(size)))
        let level: Double?
        do {
            level = try await database.reserveQuota(charge.key, tokens: wanted, perHour: size, now: now.timeIntervalSince1970)
        } catch {
            // A bucket the database cannot write counts as full, as one it cannot read: a storage hiccup must not
            // refuse everyone. Nothing was reserved, so the request is charged in full when it ends.
            return decision(level: size, standing: standing, charge: charge)
        }
        guard let level else {
            // Empty: nothing was taken. Read it for when it holds a token again.
            let stored = try? await database.quotaBucket(charge.key)
            let now = now.timeIntervalSince1970
            let left = stored.map { QuotaCharge.refilled($0.level, since: $0.updatedAt, to: now, perHour: size) } ?? 0
            var refused = decision(level: min(left, 0.999), standing: standing, charge: charge)
            refused.allowed = false
            return refused
        }
        var reserved = charge
        reserved.reserved = wanted
        var admitted = decision(level: level, standing: standing, charge: reserved)
        admitted.allowed = true
        return admitted
    }

    /// What the caller's bucket holds now, and whether a request could start (nothing is reserved).
    func check(caller: Caller, address: String, now: Date = Date()) async -> Decision {
        let (standing, charge) = await bucket(of: caller, address: address, now: now)
        // A bucket the database cannot read counts as full: a storage hiccup must not refuse everyone.
        let stored = try? await database.quotaBucket(charge.key)
        let seconds = now.timeIntervalSince1970
        let level = stored.map { QuotaCharge.refilled($0.level, since: $0.updatedAt, to: seconds, perHour: charge.tokensPerHour) }
        return decision(level: level ?? charge.tokensPerHour, standing: standing, charge: charge)
    }

    /// The caller's standing and the bucket it draws from, sized by that standing.
    private func bucket(of caller: Caller, address: String, now: Date) async -> (standing: Double, charge: QuotaCharge) {
        var standing = 0.0
        if let account = caller.account, let balance = try? await database.balance(of: account, reciprocity: reciprocity, now: now) {
            standing = balance.standing
        }
        return (standing, QuotaCharge(key: Self.key(for: caller, address: address), tokensPerHour: reciprocity.quota(standing: standing)))
    }

    /// What a bucket at `level` means for the caller: let in while it holds a token, and when it is full again.
    private func decision(level: Double, standing: Double, charge: QuotaCharge) -> Decision {
        let quota = charge.tokensPerHour
        let rate = quota / 3600
        return Decision(
            allowed: level >= 1,
            limit: Int(quota.rounded()),
            remaining: max(0, Int(level)),
            resetSeconds: Int(((quota - level) / rate).rounded(.up)),
            retryAfterSeconds: level >= 1 ? 0 : max(1, Int(((1 - level) / rate).rounded(.up))),
            standing: standing,
            charge: charge
        )
    }
}
