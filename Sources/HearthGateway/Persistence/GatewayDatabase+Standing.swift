public import Foundation
public import GRDB
public import HearthCore

extension GatewayDatabase {
    static func registerStandingMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v5-standing") { db in
            try db.alter(table: "usage") { table in
                table.add(column: "consumer", .text)
                table.add(column: "account", .text)
            }
            try db.create(table: "standing") { table in
                table.column("account", .text).primaryKey()
                table.column("contributed", .double).notNull()
                table.column("consumed", .double).notNull()
                table.column("updated_at", .double).notNull()
            }
        }
    }

    /// Moves `account`'s decayed balance forward to `now` and adds tokens, inside a write transaction.
    static func addToStanding(
        _ db: Database,
        account: String,
        contributed: Double = 0,
        consumed: Double = 0,
        reciprocity: Reciprocity,
        now: Date
    ) throws {
        let current = try balance(db, account: account)
        let updated = reciprocity.update(current, contributed: contributed, consumed: consumed, now: now.timeIntervalSince1970)
        try db.execute(
            sql: """
                INSERT INTO standing (account, contributed, consumed, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(account) DO UPDATE SET contributed = excluded.contributed, consumed = excluded.consumed,
                updated_at = excluded.updated_at
                """,
            arguments: [account, updated.contributed, updated.consumed, updated.updatedAt]
        )
        try addToAccountActivity(db, account: account, contributed: contributed, consumed: consumed, now: now)
    }

    static func balance(_ db: Database, account: String) throws -> Reciprocity.Balance {
        guard let row = try Row.fetchOne(db, sql: "SELECT contributed, consumed, updated_at FROM standing WHERE account = ?", arguments: [account])
        else { return Reciprocity.Balance() }
        return Reciprocity.Balance(contributed: row["contributed"], consumed: row["consumed"], updatedAt: row["updated_at"])
    }

    /// `account`'s balance as of `now` (decayed, not stored).
    public func balance(of account: NodeID, reciprocity: Reciprocity, now: Date = Date()) async throws -> Reciprocity.Balance {
        let stored = try await writer.read { db in try Self.balance(db, account: account.rawValue) }
        return reciprocity.update(stored, now: now.timeIntervalSince1970)
    }
}
