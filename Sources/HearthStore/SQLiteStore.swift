import Foundation
import GRDB

/// SQLite through GRDB: the embedded default (`hearth up`, a single gateway). WAL mode, one writer, concurrent readers.
public struct SQLiteStore: SQLStore {
    public var dialect: SQLDialect { .sqlite }
    let writer: any DatabaseWriter

    /// Opens (creating) the database file at `path`, or an in-memory database when `path` is nil.
    /// - Throws: `SQLStoreError` when this SQLite lacks the math functions the gateway's SQL uses (`power`, for the
    ///   decay of standing), rather than failing on the first request that needs them.
    public static func open(path: String?) throws -> SQLiteStore {
        let writer: any DatabaseWriter
        if let path {
            var configuration = Configuration()
            configuration.busyMode = .timeout(5)
            writer = try DatabasePool(path: path, configuration: configuration)
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
        return SQLiteStore(writer: writer)
    }

    public func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await writer.read { db in try body(SQLiteSession(db: db)) }
    }

    @discardableResult
    public func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await writer.write { db in try body(SQLiteSession(db: db)) }
    }

    public func writeStatement(_ sql: String, _ arguments: [any SQLBindable]) async throws -> [SQLRow] {
        try await write { session in try session.query(sql, arguments) }
    }

    /// GRDB's migrator: it records names in `grdb_migrations`, where databases made before PostgreSQL came have them.
    public func migrate(_ migrations: [Migration]) async throws {
        var migrator = DatabaseMigrator()
        for migration in migrations {
            migrator.registerMigration(migration.name) { db in
                for statement in migration.sql(for: .sqlite) { try db.execute(sql: statement) }
            }
        }
        try migrator.migrate(writer)
    }

    public func close() async {}
}

struct SQLiteSession: SQLSession {
    let db: Database
    var dialect: SQLDialect { .sqlite }

    func execute(_ sql: String, _ arguments: [any SQLBindable]) throws -> Int {
        try db.execute(sql: sql, arguments: Self.arguments(arguments))
        return db.changesCount
    }

    func query(_ sql: String, _ arguments: [any SQLBindable]) throws -> [SQLRow] {
        try Row.fetchAll(db, sql: sql, arguments: Self.arguments(arguments)).map { row in
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

    static func arguments(_ values: [any SQLBindable]) -> StatementArguments {
        StatementArguments(
            values.map { value -> (any DatabaseValueConvertible)? in
                switch value.sqlValue {
                case .null: nil
                case .integer(let integer): integer
                case .double(let double): double
                case .text(let text): text
                case .blob(let data): data
                case .date(let date): date
                case .bool(let bool): bool
                }
            }
        )
    }
}
