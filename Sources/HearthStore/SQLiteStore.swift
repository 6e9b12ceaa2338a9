package import Foundation
import GRDB

/// SQLite through GRDB: the embedded default (`hearth up`, a single gateway). WAL mode, one writer, concurrent readers.
package struct SQLiteStore: SQLStore {
    package var dialect: SQLDialect { .sqlite }
    let writer: any DatabaseWriter
    /// Copies the log back into the file, off the writer (`WALCheckpointer`); `nil` in memory.
    let checkpointer: WALCheckpointer?

    /// Opens (creating) the database file at `path`, or an in-memory database when `path` is nil.
    /// - Throws: `SQLStoreError` when this SQLite lacks the math functions the gateway's SQL uses (`power`, for the
    ///   decay of standing), rather than failing on the first request that needs them.
    ///
    /// `checkpointFrames` is the log's length (in pages) past which its writer restarts it (`WALCheckpointer`).
    package static func open(path: String?, checkpointFrames: Int = 4_096) throws -> SQLiteStore {
        let writer: any DatabaseWriter
        var checkpointer: WALCheckpointer?
        if let path {
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            // The writer commits and nothing else: `WALCheckpointer` copies the log back on its own connection.
            configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA wal_autocheckpoint = 0") }
            writer = try DatabasePool(path: path, configuration: configuration)
            checkpointer = try WALCheckpointer(path: path, writer: writer, limitFrames: checkpointFrames)
        } else {
            writer = try DatabaseQueue()
        }
        do {
            _ = try writer.read { db in try Double.fetchOne(db, sql: "SELECT power(0.5, 1)") }
        } catch {
            let version = (try? writer.read { db in try String.fetchOne(db, sql: "SELECT sqlite_version()") }) ?? nil
            throw SQLStoreError(
                message: "this SQLite (\(version ?? "unknown version")) was built without its math functions "
                    + "(power); Hearth needs SQLite 3.35 or later built with them, as Debian's and Ubuntu's are"
            )
        }
        return SQLiteStore(writer: writer, checkpointer: checkpointer)
    }

    /// Checkpoints run so far (for tests).
    package var checkpoints: Int { checkpointer?.runs ?? 0 }

    package func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await writer.read { db in try body(SQLiteSession(db: db)) }
    }

    @discardableResult
    package func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        defer { checkpointer?.wrote() }
        return try await writer.write { db in try body(SQLiteSession(db: db)) }
    }

    package func writeStatement(_ sql: String, _ arguments: [any SQLBindable]) async throws -> [SQLRow] {
        try await write { session in try session.query(sql, arguments) }
    }

    /// GRDB's migrator: it records names in `grdb_migrations`, where databases made before PostgreSQL came have them.
    package func migrate(_ migrations: [Migration]) async throws {
        var migrator = DatabaseMigrator()
        for migration in migrations {
            migrator.registerMigration(migration.name) { db in
                for statement in migration.sql(for: .sqlite) { try db.execute(sql: statement) }
            }
        }
        try migrator.migrate(writer)
        checkpointer?.wrote()
    }

    package func close() async {}
}

struct SQLiteSession: SQLSession {
    let db: Database
    var dialect: SQLDialect { .sqlite }

    func execute(_ sql: String, _ arguments: [any SQLBindable]) throws -> Int {
        if let statement = try prepared(sql) {
            try statement.execute(arguments: Self.arguments(arguments))
        } else {
            try db.execute(sql: sql, arguments: Self.arguments(arguments))
        }
        return db.changesCount
    }

    func query(_ sql: String, _ arguments: [any SQLBindable]) throws -> [SQLRow] {
        let rows =
            if let statement = try prepared(sql) {
                try Row.fetchAll(statement, arguments: Self.arguments(arguments))
            } else {
                try Row.fetchAll(db, sql: sql, arguments: Self.arguments(arguments))
            }
        return rows.map { row in
            var columns: [String: SQLValue] = [:]
            for (name, value) in row {
                columns[name] =
                    switch value.storage {
                    case .null: .null
                    case .int64(let integer): .integer(integer)
                    case .double(let double): .double(double)
                    case .string(let string): .text(string)
                    case .blob(let data): .blob(data)
                    }
            }
            return SQLRow(columns)
        }
    }

    func lock(_ key: Int64) throws {}

    /// The connection's compiled statement for `sql`, kept for the next call (compiling it again, with GRDB's
    /// authorizer, cost about a tenth of the gateway's CPU per request); `nil` for text of several statements,
    /// which only `execute(sql:)` runs.
    private func prepared(_ sql: String) throws -> Statement? {
        do {
            return try db.cachedStatement(sql: sql)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_MISUSE {
            return nil
        }
    }

    static func arguments(_ values: [any SQLBindable]) -> StatementArguments {
        StatementArguments(
            values.map { value -> (any DatabaseValueConvertible)? in
                switch value.sqlValue {
                case .null: nil
                case .integer(let integer): integer
                case .double(let double): double
                case .text(let text): text
                case .blob(let data): data
                case .date(let date): SQLiteStore.storedText(of: date)
                case .bool(let bool): bool
                }
            }
        )
    }
}

extension SQLiteStore {
    /// A date as GRDB stores it, "yyyy-MM-dd HH:mm:ss.SSS" in UTC, written here without a `DateFormatter`: GRDB's
    /// took 1.5 % of the gateway's CPU per request, and every request binds several dates. Rounded to the nearest
    /// millisecond, halves up, from the same double as the formatter's (milliseconds since 1970).
    package static func storedText(of date: Date) -> String {
        let milliseconds = Int64(((date.timeIntervalSinceReferenceDate + 978_307_200) * 1000 + 0.5).rounded(.down))
        let (days, millisecondOfDay) = milliseconds.quotientAndRemainder(dividingBy: 86_400_000)
        let (day, inDay) = millisecondOfDay < 0 ? (days - 1, millisecondOfDay + 86_400_000) : (days, millisecondOfDay)
        // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
        let shifted = day + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let dayOfMonth = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        var text = ""
        text.reserveCapacity(23)
        func append(_ value: Int64, width: Int) {
            let digits = String(value)
            text += String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        append(year, width: 4)
        text += "-"
        append(month, width: 2)
        text += "-"
        append(dayOfMonth, width: 2)
        text += " "
        append(inDay / 3_600_000, width: 2)
        text += ":"
        append(inDay / 60000 % 60, width: 2)
        text += ":"
        append(inDay / 1000 % 60, width: 2)
        text += "."
        append(inDay % 1000, width: 3)
        return text
    }
}
