import Foundation
import HearthStore

/// Token buckets live in the database, so that gateways sharing one share each caller's quota: an account (or an
/// address) gets one hour's worth across all of them, not one per gateway. The request's charge is written in the same
/// transaction as its usage row, with the bucket's row locked, so two gateways charging one bucket both count.
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
        try await store.read { session in
            guard let row = try session.queryOne("SELECT level, updated_at FROM quota_buckets WHERE key = ?", key) else { return nil }
            return (try row.double("level"), try row.double("updated_at"))
        }
    }

    /// Refills `charge`'s bucket to `now` at its rate and takes the tokens out, in one statement: the upsert locks the
    /// row, so two gateways charging one bucket both count. A bucket unused for an hour is full again, so such rows
    /// are dropped now and then (one charge in a hundred): they cost nothing to forget.
    static func chargeQuota(_ session: any SQLSession, _ charge: QuotaCharge, now: Date) throws {
        guard charge.tokens > 0 else { return }
        let seconds = now.timeIntervalSince1970
        if Int.random(in: 0..<100) == 0 {
            try session.execute("DELETE FROM quota_buckets WHERE updated_at < ? AND key <> ?", seconds - 3600, charge.key)
        }
        let dialect = session.dialect
        let refilled = dialect.least(
            "excluded.level + ?",
            "quota_buckets.level + \(dialect.greatest("0", "excluded.updated_at - quota_buckets.updated_at")) * ? / 3600"
        )
        try session.execute(
            """
            INSERT INTO quota_buckets (key, level, updated_at) VALUES (?, ?, ?)
            ON CONFLICT (key) DO UPDATE SET level = \(refilled) - ?,
            updated_at = \(dialect.greatest("quota_buckets.updated_at", "excluded.updated_at"))
            """,
            charge.key,
            charge.tokensPerHour - Double(charge.tokens),
            seconds,
            Double(charge.tokens),
            charge.tokensPerHour,
            Double(charge.tokens)
        )
    }
}

/// What a request takes from its caller's bucket once it has finished.
public struct QuotaCharge: Sendable, Equatable {
    /// The bucket: `account:<id>` or `address:<ip>`.
    public var key: String
    /// The caller's quota when the request was let in: the bucket's size and hourly refill.
    public var tokensPerHour: Double
    public var tokens: Int = 0

    public init(key: String, tokensPerHour: Double, tokens: Int = 0) {
        self.key = key
        self.tokensPerHour = tokensPerHour
        self.tokens = tokens
    }

    /// A bucket's level after refilling from `since` to `now`, never above its size.
    static func refilled(_ level: Double, since: Double, to now: Double, perHour: Double) -> Double {
        min(perHour, level + max(0, now - since) * perHour / 3600)
    }
}
