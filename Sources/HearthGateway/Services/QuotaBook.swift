import Foundation
import HearthCore
import Synchronization

/// Token quotas: each caller has a bucket of tokens per hour, sized by its standing (`Reciprocity.quota`), refilled
/// evenly, charged after each request with the tokens it really used. Anonymous callers share their address's
/// bucket at the floor; logged-in users and their API keys share their account's.
final class QuotaBook: Sendable {
    let reciprocity: Reciprocity
    let database: GatewayDatabase
    private let buckets = Mutex<[String: (level: Double, updated: Double)]>([:])
    private static let maxBuckets = 10_000

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
        var key: String
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
        let level = buckets.withLock { buckets in
            let current = buckets[key] ?? (quota, seconds)
            let level = min(quota, current.level + max(0, seconds - current.updated) * rate)
            buckets[key] = (level, seconds)
            // Forget buckets idle long enough to be full again (an hour at most), so many callers do not pile up.
            if buckets.count > Self.maxBuckets {
                buckets = buckets.filter { $0.key == key || seconds - $0.value.updated < 3600 }
            }
            return level
        }
        return Decision(
            allowed: level >= 1,
            limit: Int(quota.rounded()),
            remaining: max(0, Int(level)),
            resetSeconds: Int(((quota - level) / rate).rounded(.up)),
            retryAfterSeconds: level >= 1 ? 0 : max(1, Int(((1 - level) / rate).rounded(.up))),
            standing: standing,
            key: key
        )
    }

    /// Charges the tokens a request used to the bucket it was checked against.
    func charge(_ key: String, tokens: Int, now: Date = Date()) {
        guard tokens > 0 else { return }
        buckets.withLock { buckets in
            if var bucket = buckets[key] {
                bucket.level -= Double(tokens)
                buckets[key] = bucket
            }
        }
    }
}
