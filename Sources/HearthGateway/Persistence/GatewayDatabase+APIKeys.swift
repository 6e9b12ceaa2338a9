public import Foundation
public import GRDB

/// An API key as stored: its hash, never the secret.
public struct APIKeyRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "api_keys"

    public var id: String
    /// The account (NodeID of the user's key) that created it.
    public var owner: String
    public var name: String
    public var secretDigest: String
    public var createdAt: Date
    public var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, owner, name
        case secretDigest = "secret_sha256"
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }
}

extension GatewayDatabase {
    static func registerAPIKeyMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2-api-keys") { db in
            try db.create(table: "api_keys") { table in
                table.column("id", .text).primaryKey()
                table.column("owner", .text).notNull().indexed()
                table.column("name", .text).notNull()
                table.column("secret_sha256", .text).notNull().unique()
                table.column("created_at", .datetime).notNull()
                table.column("revoked_at", .datetime)
            }
        }
    }

    func insert(_ key: APIKeyRecord) async throws {
        try await writer.write { db in try key.insert(db) }
    }

    func apiKey(secretDigest: String) async throws -> APIKeyRecord? {
        try await writer.read { db in try APIKeyRecord.filter(Column("secret_sha256") == secretDigest).fetchOne(db) }
    }

    /// The keys `owner` created, newest first.
    public func apiKeys(owner: String) async throws -> [APIKeyRecord] {
        try await writer.read { db in
            try APIKeyRecord.filter(Column("owner") == owner).order(Column("created_at").desc).fetchAll(db)
        }
    }

    /// Revokes key `id` if `owner` created it and it is not revoked yet. Returns whether it did.
    public func revokeAPIKey(id: String, owner: String, at time: Date) async throws -> Bool {
        try await writer.write { db in
            try APIKeyRecord.filter(Column("id") == id && Column("owner") == owner && Column("revoked_at") == nil)
                .updateAll(db, Column("revoked_at").set(to: time)) > 0
        }
    }
}
