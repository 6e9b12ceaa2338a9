import Foundation
import HearthStore

/// Token buckets live in the database, so that gateways sharing one share each caller's quota: an account (or an
/// address) gets one hour's worth across all of them, not one per gateway. A request reserves the most it may take
/// when it is let in (one upsert: gateways admitting requests of one caller at once each see the others'
/// reservations), and its real cost settles the difference in its usage row's transaction. So concurrent requests,
/// through one gateway or several, cannot spend a bucket more than once: the most a caller can overspend is what the
/// last request let in (with a token left) goes beyond it, as when requests come one at a time.
///
/// A SQLite database has one gateway: its buckets are held in that gateway's memory and written behind
/// (`QuotaBuckets`), so that letting a request in does not wait for the database's one writer.
extension GatewayDatabase {
    static let quotaMigration = Migration(
        "v12-quota-buckets",
        [
            "CREATE TABLE quota_buckets (key TEXT PRIMARY KEY NOT NULL, level {double} NOT NULL, updated_at {double} NOT NULL)",
            "CREATE INDEX quota_buckets_on_updated_at ON quota_buckets (updated_at)",
        ]
    )

    /// A bucket's level and when it was last charged (seconds since 1970), or nil for a full one.
    package func quotaBucket(_ key: String) async throws -> (level: Double, updatedAt: Double)? {
        if let held = quotaBuckets?.bucket(key) { return held.isStored ? (held.level, held.updatedAt) : nil }
        return try await store.read { session in
            guard let row = try session.queryOne("SELECT level, updated_at FROM quota_buckets WHERE key = ?", key) else { return nil }
            return (try row.double("level"), try row.double("updated_at"))
        }
    }

    /// The bucket's level refilled to the new row's time at `perHour` and capped there: SQL over the conflicting row
    /// (`quota_buckets`) and the proposed one (`excluded`), binding `perHour` twice.
    static func refilledLevel(_ dialect: SQLDialect) -> String {
        dialect.least("?", "quota_buckets.level + \(dialect.greatest("0", "excluded.updated_at - quota_buckets.updated_at")) * ? / 3600")
    }

    /// Takes `tokens` out of `key`'s bucket, refilled to `now`, when it holds at least one token; a new bucket starts
    /// full. One statement, atomic on its own. Returns the level left (below zero when the reservation was larger than
    /// what was left), or nil when the bucket was empty and nothing was taken.
    package func reserveQuota(_ key: String, tokens: Int, perHour: Double, now: Double) async throws -> Double? {
        if let buckets = quotaBuckets {
            if buckets.bucket(key) == nil {
                let stored = try await quotaBucket(key)
                buckets.hold(key, stored: stored.map { QuotaBuckets.Bucket(level: $0.level, updatedAt: $0.updatedAt) })
            }
            let level = buckets.reserve(key, tokens: tokens, perHour: perHour, now: now)
            // Written with the next group commit; nobody waits for it. A write that fails is made good by the
            // bucket's next one, which stores it whole.
            if level != nil {
                commits.enqueue(
                    { session in
                        try buckets.write(key, in: session)
                        return nil
                    },
                    failed: { _ in }
                )
            }
            return level
        }
        let dialect = store.dialect
        let refilled = Self.refilledLevel(dialect)
        let rows = try await store.writeStatement(
            """
            INSERT INTO quota_buckets (key, level, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET level = \(refilled) - ?,
            updated_at = \(dialect.greatest("quota_buckets.updated_at", "excluded.updated_at"))
            WHERE \(refilled) >= 1
            RETURNING level
            """,
            [key, perHour - Double(tokens), now, perHour, perHour, Double(tokens), perHour, perHour]
        )
        return try rows.first.map { try $0.double("level") }
    }

    /// Now and then (one call in a hundred), drops the rows of buckets unused for an hour: they are full again.
    static func dropIdleBuckets(_ session: any SQLSession, sparing key: String, now: Double) throws {
        guard Int.random(in: 0..<100) == 0 else { return }
        try session.execute("DELETE FROM quota_buckets WHERE updated_at < ? AND key <> ?", now - 3600, key)
    }

    /// Settles `charge` in its bucket: refills it to `now` at its rate and takes out what the request cost beyond what
    /// it reserved (or gives back what it did not use), never above the bucket's size. One statement: the upsert
    /// locks the row, so two gateways charging one bucket both count. A bucket unused for an hour is full again, so
    /// such rows are dropped now and then (one charge in a hundred): they cost nothing to forget.
    static func chargeQuota(_ session: any SQLSession, _ charge: QuotaCharge, now: Date) throws {
        let difference = Double(charge.tokens - charge.reserved)
        guard difference != 0 else { return }
        let seconds = now.timeIntervalSince1970
        try dropIdleBuckets(session, sparing: charge.key, now: seconds)
        let dialect = session.dialect
        try session.execute(
            """
            INSERT INTO quota_buckets (key, level, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET level = \(dialect.least("?", "\(refilledLevel(dialect)) - ?")),
            updated_at = \(dialect.greatest("quota_buckets.updated_at", "excluded.updated_at"))
            """,
            charge.key,
            min(charge.tokensPerHour, charge.tokensPerHour - difference),
            seconds,
            charge.tokensPerHour,
            charge.tokensPerHour,
            charge.tokensPerHour,
            difference
        )
    }
}

/// What a request takes from its caller's bucket: reserved when it is let in, settled once it has finished.
package struct QuotaCharge: Sendable, Equatable {
    /// The bucket: `account:<id>` or `address:<ip>`.
    var key: String
    /// The caller's quota when the request was let in: the bucket's size and hourly refill.
    var tokensPerHour: Double
    /// What the request cost, filled in when it ends.
    var tokens: Int = 0
    /// What was taken from the bucket when it was let in (0 when nothing was).
    var reserved: Int = 0

    package init(key: String, tokensPerHour: Double, tokens: Int = 0, reserved: Int = 0) {
        self.key = key
        self.tokensPerHour = tokensPerHour
        self.tokens = tokens
        self.reserved = reserved
    }

    /// A bucket's level after refilling from `since` to `now`, never above its size.
    static func refilled(_ level: Double, since: Double, to now: Double, perHour: Double) -> Double {
        min(perHour, level + max(0, now - since) * perHour / 3600)
    }
}
