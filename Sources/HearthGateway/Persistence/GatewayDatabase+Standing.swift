package import Foundation
package import HearthCore
import HearthStore

extension GatewayDatabase {
    static let standingMigration = Migration(
        "v5-standing",
        [
            "ALTER TABLE usage ADD COLUMN consumer TEXT",
            "ALTER TABLE usage ADD COLUMN account TEXT",
            """
            CREATE TABLE standing (account TEXT PRIMARY KEY NOT NULL, contributed {double} NOT NULL, consumed {double} NOT NULL,
                updated_at {double} NOT NULL)
            """,
        ]
    )

    /// Moves `account`'s decayed balance forward to `now` and adds tokens, inside a write transaction: one upsert that
    /// makes the row if need be and otherwise decays and adds in the database, on the row as it is when the upsert
    /// locks it, so two gateways charging one account at once both count. The decay is `Reciprocity.update`'s, written
    /// in SQL (`power`: SQLite 3.35+ built with its math functions, as Debian's is; PostgreSQL).
    static func addToStanding(
        _ session: any SQLSession,
        account: String,
        contributed: Double = 0,
        consumed: Double = 0,
        reciprocity: Reciprocity,
        now: Date
    ) throws {
        let dialect = session.dialect
        let decay = "power(0.5, \(dialect.greatest("0", "excluded.updated_at - standing.updated_at")) / ?)"
        try session.execute(
            """
            INSERT INTO standing (account, contributed, consumed, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (account) DO UPDATE SET contributed = standing.contributed * \(decay) + excluded.contributed,
            consumed = standing.consumed * \(decay) + excluded.consumed,
            updated_at = \(dialect.greatest("standing.updated_at", "excluded.updated_at"))
            """,
            account,
            contributed,
            consumed,
            now.timeIntervalSince1970,
            reciprocity.halfLife,
            reciprocity.halfLife
        )
        try addToAccountActivity(session, account: account, contributed: contributed, consumed: consumed, now: now)
    }

    static func balance(_ session: any SQLSession, account: String) throws -> Reciprocity.Balance {
        guard let row = try session.queryOne("SELECT contributed, consumed, updated_at FROM standing WHERE account = ?", account) else {
            return Reciprocity.Balance()
        }
        return Reciprocity.Balance(
            contributed: try row.double("contributed"),
            consumed: try row.double("consumed"),
            updatedAt: try row.double("updated_at")
        )
    }

    /// `account`'s balance as of `now` (decayed, not stored).
    package func balance(of account: NodeID, reciprocity: Reciprocity, now: Date = Date()) async throws -> Reciprocity.Balance {
        let stored = try await store.read { session in try Self.balance(session, account: account.rawValue) }
        return reciprocity.update(stored, now: now.timeIntervalSince1970)
    }
}
