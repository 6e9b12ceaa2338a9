/// Which SQL a statement is written for where the two databases differ. Statements are written once, in the
/// subset both understand (`?` placeholders, `INSERT … ON CONFLICT`, `RETURNING`); the few places that differ
/// ask the dialect.
package enum SQLDialect: String, Sendable {
    case sqlite
    case postgres

    /// Seconds since 1970 of a date column, as an integer.
    package func epochSeconds(_ column: String) -> String {
        switch self {
        case .sqlite: "CAST(strftime('%s', \(column)) AS INTEGER)"
        case .postgres: "CAST(EXTRACT(EPOCH FROM \(column)) AS BIGINT)"
        }
    }

    /// The smaller and the larger of two values (SQLite's two-argument `min`/`max`, PostgreSQL's `LEAST`/`GREATEST`).
    package func least(_ a: String, _ b: String) -> String {
        self == .sqlite ? "min(\(a), \(b))" : "LEAST(\(a), \(b))"
    }

    package func greatest(_ a: String, _ b: String) -> String {
        self == .sqlite ? "max(\(a), \(b))" : "GREATEST(\(a), \(b))"
    }

    /// Appended to a `SELECT` whose rows the transaction goes on to update: PostgreSQL locks them until it ends, so
    /// two gateways cannot both read a balance and write back their own sum. SQLite has one writer at a time anyway.
    package var forUpdate: String {
        switch self {
        case .sqlite: ""
        case .postgres: " FOR UPDATE"
        }
    }
}

/// A connection inside a transaction. Statements use `?` placeholders; each backend binds them its own way.
/// Sessions are synchronous: SQLite's run on GRDB's writer, PostgreSQL's on a thread of the store's own lane.
package protocol SQLSession {
    var dialect: SQLDialect { get }

    /// Runs a statement and returns how many rows it changed.
    @discardableResult
    func execute(_ sql: String, _ arguments: [any SQLBindable]) throws -> Int

    /// Runs a query and returns its rows.
    func query(_ sql: String, _ arguments: [any SQLBindable]) throws -> [SQLRow]

    /// Makes the rest of the transaction wait for any other transaction holding the same `key` (a no-op on SQLite,
    /// whose writes are serialised already). For appends that read the last row and write the next one. A key already
    /// held in this transaction is not asked for again.
    func lock(_ key: Int64) throws
}

extension SQLSession {
    @discardableResult
    package func execute(_ sql: String, _ arguments: any SQLBindable...) throws -> Int {
        try execute(sql, arguments)
    }

    package func query(_ sql: String, _ arguments: any SQLBindable...) throws -> [SQLRow] {
        try query(sql, arguments)
    }

    /// The first row of a query, if any.
    package func queryOne(_ sql: String, _ arguments: any SQLBindable...) throws -> SQLRow? {
        try query(sql, arguments).first
    }
}

/// A database: transactions of synchronous work, off the caller's thread.
package protocol SQLStore: Sendable {
    var dialect: SQLDialect { get }

    /// Runs `body` in a read-only transaction.
    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T

    /// Runs `body` in a transaction that commits when it returns and rolls back when it throws. `body` may run more
    /// than once: PostgreSQL aborts one of two transactions that deadlock or conflict, and the store runs it again.
    @discardableResult
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T

    /// Runs one statement that writes (an upsert with `RETURNING`, say) on its own, atomically, and returns its rows:
    /// on PostgreSQL without `BEGIN` and `COMMIT` around it, a third of the round trips of `write`.
    func writeStatement(_ sql: String, _ arguments: [any SQLBindable]) async throws -> [SQLRow]

    /// Applies the migrations not yet applied, in order, each in its own transaction, and records their names.
    func migrate(_ migrations: [Migration]) async throws

    /// Closes the connections.
    func close() async
}
