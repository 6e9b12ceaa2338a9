package import Foundation
import HearthStore

/// An API key as stored: its hash, never the secret.
package struct APIKeyRecord: Codable, Sendable, Equatable {
    var id: String
    /// The account (NodeID of the user's key) that created it.
    var owner: String
    var name: String
    package var secretDigest: String
    var createdAt: Date
    package var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case id, owner, name
        case secretDigest = "secret_sha256"
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }
}

extension APIKeyRecord {
    init(row: SQLRow) throws {
        id = try row.string("id")
        owner = try row.string("owner")
        name = try row.string("name")
        secretDigest = try row.string("secret_sha256")
        createdAt = try row.date("created_at")
        revokedAt = row.optionalDate("revoked_at")
    }
}

extension GatewayDatabase {
    static let apiKeyMigration = Migration(
        "v2-api-keys",
        [
            """
            CREATE TABLE api_keys (id TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, name TEXT NOT NULL,
                secret_sha256 TEXT NOT NULL UNIQUE, created_at {datetime} NOT NULL, revoked_at {datetime})
            """,
            "CREATE INDEX api_keys_on_owner ON api_keys (owner)",
        ]
    )

    func insert(_ key: APIKeyRecord) async throws {
        try await store.write { session in
            try session.execute(
                "INSERT INTO api_keys (id, owner, name, secret_sha256, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
                key.id,
                key.owner,
                key.name,
                key.secretDigest,
                key.createdAt,
                key.revokedAt
            )
        }
    }

    func apiKey(secretDigest: String) async throws -> APIKeyRecord? {
        try await store.read { session in
            try session.queryOne("SELECT * FROM api_keys WHERE secret_sha256 = ?", secretDigest).map(APIKeyRecord.init(row:))
        }
    }

    /// The keys `owner` created, newest first.
    package func apiKeys(owner: String) async throws -> [APIKeyRecord] {
        try await store.read { session in
            try session.query("SELECT * FROM api_keys WHERE owner = ? ORDER BY created_at DESC", owner).map(APIKeyRecord.init(row:))
        }
    }

    /// Revokes key `id` if `owner` created it and it is not revoked yet. Returns whether it did.
    func revokeAPIKey(id: String, owner: String, at time: Date) async throws -> Bool {
        try await store.write { session in
            try session.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND owner = ? AND revoked_at IS NULL", time, id, owner) > 0
        }
    }
}
