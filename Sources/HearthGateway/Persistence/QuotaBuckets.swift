import HearthStore
import Synchronization

/// The quota buckets of a SQLite database, held in memory by the one gateway that uses it and written behind.
///
/// Letting a request in took a trip to the database's writer before the request could go to a node, and SQLite has
/// one writer: the reservation waited behind the usage records of the requests that had just finished (0.13–0.15 ms
/// of the added latency p50, twice that at p99, `bench/README.md`). Here a reservation is taken in memory at once, and
/// writing the bucket is queued for the next group commit (`GroupCommit`), with the request's in-flight note; a bucket
/// is read from the database the first time a reservation needs it. A write stores the bucket as it is when its
/// transaction runs, so the row ends as the memory says in whatever order the writes commit. A crash loses at most
/// the reservations of the last moments, whose requests it cut off too.
///
/// The arithmetic is `GatewayDatabase.reserveQuota`'s and `chargeQuota`'s SQL, done in Swift. PostgreSQL's buckets stay
/// rows changed by one statement each: gateways sharing that database share them.
final class QuotaBuckets: Sendable {
    /// A bucket's level and when it was last changed (seconds since 1970). A bucket the database has no row for is
    /// full: `level` is then infinite (refilling caps it at the bucket's size), and `updatedAt` zero.
    struct Bucket: Sendable, Equatable {
        var level: Double
        var updatedAt: Double

        static let full = Bucket(level: .infinity, updatedAt: 0)

        /// The level refilled to `now` at `perHour` and capped there.
        func refilled(to now: Double, perHour: Double) -> Double {
            min(perHour, level + max(0, now - updatedAt) * perHour / 3600)
        }

        /// A row for it exists, or will once written (a full bucket nobody charged has none).
        var isStored: Bool { level.isFinite }
    }

    private let buckets = Mutex<[String: Bucket]>([:])

    /// The bucket, when this gateway holds it.
    func bucket(_ key: String) -> Bucket? {
        buckets.withLock { $0[key] }
    }

    /// Holds `stored` (what the database has for `key`) unless the bucket is held already: a reservation that loaded it
    /// meanwhile has changed it since.
    func hold(_ key: String, stored: Bucket?) {
        buckets.withLock { buckets in
            if buckets[key] == nil { buckets[key] = stored ?? .full }
        }
    }

    /// Takes `tokens` out of a held bucket when it holds at least one token after refilling (`reserveQuota`). Returns
    /// the level left, or nil when the bucket was empty (nothing taken) or is not held.
    func reserve(_ key: String, tokens: Int, perHour: Double, now: Double) -> Double? {
        buckets.withLock { buckets in
            guard var bucket = buckets[key] else { return nil }
            let refilled = bucket.refilled(to: now, perHour: perHour)
            guard refilled >= 1 else { return nil }
            bucket.level = refilled - Double(tokens)
            bucket.updatedAt = max(bucket.updatedAt, now)
            buckets[key] = bucket
            return bucket.level
        }
    }

    /// Settles `charge` in its bucket when held (`chargeQuota`): refilled, then what the request cost beyond its
    /// reservation taken out (or what it did not use given back), never above the bucket's size. Returns false when
    /// the bucket is not held, for the database to settle it. Now and then drops buckets idle for an hour: they are
    /// full again, so forgetting them loses nothing.
    func charge(_ charge: QuotaCharge, now: Double) -> Bool {
        let difference = Double(charge.tokens - charge.reserved)
        return buckets.withLock { buckets in
            guard var bucket = buckets[charge.key] else { return false }
            if Int.random(in: 0..<100) == 0 { buckets = buckets.filter { $0.key == charge.key || $0.value.updatedAt >= now - 3600 } }
            guard difference != 0 else { return true }
            bucket.level = min(charge.tokensPerHour, bucket.refilled(to: now, perHour: charge.tokensPerHour) - difference)
            bucket.updatedAt = max(bucket.updatedAt, now)
            buckets[charge.key] = bucket
            return true
        }
    }

    /// Writes the bucket as it is now, in `session`'s transaction (nothing for a bucket not held, or never charged).
    func write(_ key: String, in session: any SQLSession) throws {
        guard let bucket = bucket(key), bucket.isStored else { return }
        try session.execute(
            """
            INSERT INTO quota_buckets (key, level, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET level = excluded.level, updated_at = excluded.updated_at
            """,
            key,
            bucket.level,
            bucket.updatedAt
        )
    }
}
