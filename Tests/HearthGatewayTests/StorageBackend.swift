import Crypto
import Foundation
import HearthTesting
import Logging
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthStore

/// The databases a gateway can run on. Every test of `StorageConformanceTests` runs on each.
enum StorageBackend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite
    case postgres

    var testDescription: String { rawValue }

    /// The database at `place`: a folder for SQLite, a URL for PostgreSQL.
    func database(at place: String) async throws -> GatewayDatabase {
        try await GatewayDatabase.open(
            url: self == .postgres ? try DatabaseURL(place) : nil,
            directory: self == .sqlite ? place : nil,
            logger: Logger(label: "test")
        )
    }

    /// A new, empty, migrated database: a file of its own, or a database of its own on the shared test server.
    /// `sharing` opens a second gateway's connection to the same database.
    func open(
        _ label: String,
        gateway: String = "gateway-a"
    ) async throws -> (GatewayDatabase, reopen: @Sendable (String) async throws -> GatewayDatabase) {
        let place: String
        switch self {
        case .sqlite: place = try TestEnvironment.temporaryDirectory("store-\(label)")
        case .postgres: place = try await PostgresServer.shared.database(label)
        }
        let backend = self
        let reopen: @Sendable (String) async throws -> GatewayDatabase = { gateway in
            var database = try await backend.database(at: place)
            database.gatewayID = gateway
            try await database.migrate()
            return database
        }
        return (try await reopen(gateway), reopen)
    }
}

/// A clock the test moves by hand.
final class TestClock: Sendable {
    private let time = Mutex(Date(timeIntervalSince1970: 1_800_000_000))
    var now: Date { time.withLock { $0 } }
    func advance(by seconds: TimeInterval) { time.withLock { $0 += seconds } }
}
