import Foundation
package import Logging
import NIOCore
import NIOFoundationCompat
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// PostgreSQL through postgres-nio: the database several gateways share (docs/SCALE-OUT.md).
///
/// Transactions run on a lane of threads of their own, one connection per thread, each statement waited for there:
/// the same synchronous sessions as SQLite's, so every query in Hearth is written once. The lane keeps that waiting
/// off Swift's cooperative threads and off the event loops. Transactions run at READ COMMITTED; where a value is
/// read and written back (standing, an invite's uses, a chain's head) the statement locks the row (`FOR UPDATE`) or a
/// key (`lock`). A transaction PostgreSQL aborts for a deadlock or a serialization conflict is run again.
package final class PostgresStore: SQLStore {
    package var dialect: SQLDialect { .postgres }

    private let configuration: PostgresConnection.Configuration
    private let lane: NIOThreadPool
    private let idle = Mutex<[PostgresConnection]>([])
    private let nextID = Atomic<Int>(0)
    private let logger: Logger
    /// How many times a transaction that lost a deadlock or a serialization conflict is tried in all.
    static let attempts = 8

    /// Connects lazily: the first transaction opens the first connection. `connections` is also the lane's size.
    package init(url: DatabaseURL, connections: Int = 8, logger: Logger) throws {
        configuration = try url.postgresConfiguration()
        lane = NIOThreadPool(numberOfThreads: max(1, connections))
        lane.start()
        self.logger = logger
    }

    /// Checks that the server answers (and the credentials work), so a wrong URL fails at start, not at a request.
    package func ping() async throws {
        _ = try await read { session in try session.query("SELECT 1 AS one") }
    }

    package func read<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await onLane { connection in
            // Each statement sees what was committed when it began: a read needs no transaction of its own.
            try body(PostgresSession(connection: connection, logger: self.logger))
        }
    }

    @discardableResult
    package func write<T: Sendable>(_ body: @escaping @Sendable (any SQLSession) throws -> T) async throws -> T {
        try await onLane { connection in
            var attempt = 1
            while true {
                let session = PostgresSession(connection: connection, logger: self.logger)
                do {
                    try session.execute("BEGIN")
                    do {
                        let result = try body(session)
                        try session.execute("COMMIT")
                        return result
                    } catch {
                        if !connection.isClosed { _ = try? session.execute("ROLLBACK") }
                        throw error
                    }
                } catch let error as SQLStoreError where error.isTransient && attempt < Self.attempts {
                    attempt += 1
                    self.logger.debug("transaction retried", metadata: ["sql.state": "\(error.state ?? "")", "attempt": "\(attempt)"])
                }
            }
        }
    }

    package func writeStatement(_ sql: String, _ arguments: [any SQLBindable]) async throws -> [SQLRow] {
        try await onLane { connection in
            // Outside a transaction a statement is one of its own: it commits, or fails, alone.
            try PostgresSession(connection: connection, logger: self.logger).query(sql, arguments)
        }
    }

    package func migrate(_ migrations: [Migration]) async throws {
        try await write { session in
            // Gateways that start together take turns; the second finds the first one's names.
            try session.lock(Self.migrationLock)
            try session.execute("CREATE TABLE IF NOT EXISTS hearth_migrations (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)")
            let applied = Set(try session.query("SELECT name FROM hearth_migrations").map { try $0.string("name") })
            for migration in migrations where !applied.contains(migration.name) {
                for statement in migration.sql(for: .postgres) { try session.execute(statement) }
                try session.execute("INSERT INTO hearth_migrations (name, applied_at) VALUES (?, ?)", migration.name, Date())
            }
        }
    }

    package func close() async {
        let connections = idle.withLock { idle in
            defer { idle = [] }
            return idle
        }
        for connection in connections { try? await connection.close() }
        try? await lane.shutdownGracefully()
    }

    deinit {
        // postgres-nio wants every connection closed before it is released: idle ones are closed on their way out.
        let connections = idle.withLock { $0 }
        if !connections.isEmpty {
            Task { for connection in connections { try? await connection.close() } }
        }
        lane.shutdownGracefully { _ in }
    }

    /// An arbitrary key that only migrations lock.
    static let migrationLock: Int64 = 0x4845_4152_5448_4d47

    /// Runs `work` on a lane thread with a connection of its own, opening one when none is idle.
    private func onLane<T: Sendable>(_ work: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await lane.runIfActive {
            let connection = try self.checkOut()
            do {
                let result = try work(connection)
                self.checkIn(connection)
                return result
            } catch {
                self.checkIn(connection)
                throw error
            }
        }
    }

    private func checkOut() throws -> PostgresConnection {
        while let connection = idle.withLock({ $0.popLast() }) {
            if !connection.isClosed { return connection }
        }
        do {
            return try PostgresConnection.connect(
                on: MultiThreadedEventLoopGroup.singleton.next(),
                configuration: configuration,
                id: nextID.add(1, ordering: .relaxed).newValue,
                logger: logger
            ).wait()
        } catch {
            throw SQLStoreError(error)
        }
    }

    private func checkIn(_ connection: PostgresConnection) {
        guard !connection.isClosed else { return }
        idle.withLock { $0.append(connection) }
    }
}

struct PostgresSession: SQLSession {
    let connection: PostgresConnection
    let logger: Logger
    /// The advisory locks this session's transaction holds (a session is made for each run of a transaction).
    let held = HeldLocks()
    var dialect: SQLDialect { .postgres }

    final class HeldLocks: Sendable {
        let keys = Mutex<Set<Int64>>([])
    }

    func execute(_ sql: String, _ arguments: [any SQLBindable]) throws -> Int {
        try run(sql, arguments).metadata.rows ?? 0
    }

    func query(_ sql: String, _ arguments: [any SQLBindable]) throws -> [SQLRow] {
        try run(sql, arguments).rows.map { row in
            var columns: [String: SQLValue] = [:]
            for cell in row { columns[cell.columnName] = try Self.value(of: cell) }
            return SQLRow(columns)
        }
    }

    func lock(_ key: Int64) throws {
        // A transaction of many appends (the group commit's) takes its lock once: the lock lasts until it ends.
        guard held.keys.withLock({ $0.insert(key).inserted }) else { return }
        _ = try run("SELECT pg_advisory_xact_lock(?)", [key])
    }

    private func run(_ sql: String, _ arguments: [any SQLBindable]) throws -> PostgresQueryResult {
        var bindings = PostgresBindings(capacity: arguments.count)
        for argument in arguments {
            switch argument.sqlValue {
            case .null: bindings.appendNull()
            case .integer(let value): bindings.append(value)
            case .double(let value): bindings.append(value)
            case .text(let value): bindings.append(value)
            case .blob(let value): bindings.append(ByteBuffer(data: value))
            case .date(let value): bindings.append(value)
            case .bool(let value): bindings.append(value)
            }
        }
        let query = PostgresQuery(unsafeSQL: Self.numberPlaceholders(sql), binds: bindings)
        do {
            return try connection.query(query, logger: logger).wait()
        } catch {
            throw SQLStoreError(error)
        }
    }

    /// `?` → `$1`, `$2`, … outside quoted text.
    static func numberPlaceholders(_ sql: String) -> String {
        guard sql.contains("?") else { return sql }
        var result = ""
        result.reserveCapacity(sql.utf8.count + 16)
        var number = 0
        var quote: Character?
        for character in sql {
            if let open = quote {
                if character == open { quote = nil }
                result.append(character)
            } else if character == "'" || character == "\"" {
                quote = character
                result.append(character)
            } else if character == "?" {
                number += 1
                result += "$\(number)"
            } else {
                result.append(character)
            }
        }
        return result
    }

    static func value(of cell: PostgresCell) throws -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
        case .float4, .float8: return .double(try cell.decode(Double.self))
        case .numeric:
            let decimal = try cell.decode(Decimal.self)
            let double = NSDecimalNumber(decimal: decimal).doubleValue
            return double.rounded() == double && abs(double) < 9.0e18 ? .integer(Int64(double)) : .double(double)
        case .bool: return .bool(try cell.decode(Bool.self))
        case .bytea: return .blob(try cell.decode(Data.self))
        case .timestamptz, .timestamp, .date: return .date(try cell.decode(Date.self))
        default: return .text(try cell.decode(String.self))
        }
    }
}

/// A database error with what the server said: its SQLSTATE code and message.
struct SQLStoreError: Error, CustomStringConvertible {
    /// SQLSTATE (`23505` unique violation, `40P01` deadlock, …), when the server answered.
    var state: String?
    var message: String

    init(message: String) {
        self.message = message
    }

    init(_ error: any Error) {
        if let error = error as? SQLStoreError {
            self = error
        } else if let error = error as? PSQLError {
            state = error.serverInfo?[.sqlState]
            if let server = error.serverInfo?[.message] {
                message = server + (error.serverInfo?[.detail].map { " (\($0))" } ?? "")
            } else {
                message = "PostgreSQL: \(error.code)" + (error.underlying.map { ": \($0)" } ?? "")
            }
        } else {
            message = "\(error)"
        }
    }

    /// A deadlock or serialization conflict: nothing was written, and the same transaction may succeed if run again.
    var isTransient: Bool { state == "40P01" || state == "40001" }

    /// A row with the same unique key exists.
    var isUniqueViolation: Bool { state == "23505" }

    var description: String { state.map { "\(message) [\($0)]" } ?? message }
}
