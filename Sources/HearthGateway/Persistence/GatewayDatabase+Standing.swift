public import Foundation
public import HearthCore
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

    /// Moves `account`'s decayed balance forward to `now` and adds tokens, inside a write transaction. The row is
    /// made first if need be and locked while read, so two gateways charging one account at once both count.
    static func addToStanding(
        _ session: any SQLSession,
        account: String,
        contributed: Double = 0,
        consumed: Double = 0,
        reciprocity: Reciprocity,
        now: Date
    ) throws {
        try session.execute(
            "INSERT INTO standing (account, contributed, consumed, updated_at) VALUES (?, 0, 0, ?) ON CONFLICT (account) DO NOTHING",
            account,
            now.timeIntervalSince1970
        )
        let current = try balance(session, account: account, locking: true)
        let updated = reciprocity.update(current, contributed: contributed, consumed: consumed, now: now.timeIntervalSince1970)
        try session.execute(
            "UPDATE standing SET contributed = ?, consumed = ?, updated_at = ? WHERE account = ?",
            updated.contributed,
            updated.consumed,
            updated.updatedAt,
            account
        )
        try addToAccountActivity(session, account: account, contributed: contributed, consumed: consumed, now: now)
    }

    static func balance(_ session: any SQLSession, account: String, locking: Bool = false) throws -> Reciprocity.Balance {
        let sql = "SELECT contributed, consumed, updated_at FROM standing WHERE account = ?" + (locking ? session.dialect.forUpdate : "")
        guard let row = try session.queryOne(sql, account) else { return Reciprocity.Balance() }
        return Reciprocity.Balance(
            contributed: try row.double("contributed"),
            consumed: try row.double("consumed"),
            updatedAt: try row.double("updated_at")
        )
    }

    /// `account`'s balance as of `now` (decayed, not stored).
    public func balance(of account: NodeID, reciprocity: Reciprocity, now: Date = Date()) async throws -> Reciprocity.Balance {
        let stored = try await store.read { session in try Self.balance(session, account: account.rawValue) }
        return reciprocity.update(stored, now: now.timeIntervalSince1970)
    }
}
