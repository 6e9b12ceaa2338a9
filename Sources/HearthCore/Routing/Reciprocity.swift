package import Foundation

/// Standing and quotas: serving earns headroom, using spends it, and both fade so standing reflects recent behaviour.
///
/// - Contribution of an account: prompt + completion tokens of credited receipts from the nodes it certified.
///   Consumption: prompt + completion tokens of the requests it (or its API keys) made.
/// - Both decay exponentially with a half-life (14 days by default): a value `v` recorded at `t0` counts
///   `v · 0.5^((t − t0) / halfLife)` at `t`.
/// - Standing = contribution − consumption.
/// - Quota (tokens per hour) = min(ceiling, floor + max(0, standing)). Anonymous callers and new accounts get the
///   floor: there is no sign-up bonus, so new identities gain nothing. It is monotone in standing and capped.
package struct Reciprocity: Sendable, Equatable {
    /// Tokens per hour for anonymous callers and accounts with no standing.
    var floorTokensPerHour: Double
    /// The most any account gets.
    var ceilingTokensPerHour: Double
    package var halfLife: TimeInterval

    package init(floorTokensPerHour: Double = 20_000, ceilingTokensPerHour: Double = 1_000_000, halfLife: TimeInterval = 14 * 86400) {
        self.floorTokensPerHour = floorTokensPerHour
        self.ceilingTokensPerHour = ceilingTokensPerHour
        self.halfLife = halfLife
    }

    /// The factor a value loses over `elapsed` seconds.
    func decay(over elapsed: TimeInterval) -> Double {
        elapsed <= 0 ? 1 : pow(0.5, elapsed / halfLife)
    }

    /// Tokens per hour for an account with `standing` (0 for anonymous callers).
    package func quota(standing: Double) -> Double {
        min(ceilingTokensPerHour, floorTokensPerHour + max(0, standing))
    }

    /// An account's decayed totals.
    package struct Balance: Sendable, Equatable, Codable {
        package var contributed: Double
        package var consumed: Double
        /// Seconds since 1970 of the last update.
        var updatedAt: Double

        package init(contributed: Double = 0, consumed: Double = 0, updatedAt: Double = 0) {
            self.contributed = contributed
            self.consumed = consumed
            self.updatedAt = updatedAt
        }

        package var standing: Double { contributed - consumed }
    }

    /// `balance` brought forward to `now` and then changed by the given tokens.
    package func update(_ balance: Balance, contributed: Double = 0, consumed: Double = 0, now: Double) -> Balance {
        let factor = decay(over: now - balance.updatedAt)
        return Balance(
            contributed: balance.contributed * factor + contributed,
            consumed: balance.consumed * factor + consumed,
            updatedAt: max(now, balance.updatedAt)
        )
    }
}
