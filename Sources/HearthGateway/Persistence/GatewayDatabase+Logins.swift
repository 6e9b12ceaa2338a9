import Foundation
import HearthStore

/// Login challenges and tokens live in the database, so that gateways sharing one are one service: a token issued by
/// one is good on all, and a nonce is spent once wherever it is presented (docs/SCALE-OUT.md). Tokens are stored as
/// SHA-256 hashes, as API keys are: a copy of the database logs nobody in.
extension GatewayDatabase {
    static let loginMigration = Migration(
        "v10-logins",
        [
            "CREATE TABLE login_challenges (nonce TEXT PRIMARY KEY NOT NULL, public_key {blob} NOT NULL, expires_at {datetime} NOT NULL)",
            "CREATE INDEX login_challenges_on_expires_at ON login_challenges (expires_at)",
            "CREATE TABLE login_tokens (token_sha256 TEXT PRIMARY KEY NOT NULL, account TEXT NOT NULL, expires_at {datetime} NOT NULL)",
            "CREATE INDEX login_tokens_on_expires_at ON login_tokens (expires_at)",
            // Which gateway noted a request in flight: each recovers only its own after a crash.
            "ALTER TABLE in_flight ADD COLUMN gateway TEXT",
        ]
    )

    /// Stores a challenge, and forgets the expired ones.
    func insertChallenge(nonce: String, publicKey: Data, expiresAt: Date, now: Date) async throws {
        try await store.write { session in
            try session.execute("DELETE FROM login_challenges WHERE expires_at < ?", now)
            try session.execute("INSERT INTO login_challenges (nonce, public_key, expires_at) VALUES (?, ?, ?)", nonce, publicKey, expiresAt)
        }
    }

    /// Removes a challenge and returns it: a nonce is spent by whoever takes it first, on any gateway.
    func takeChallenge(nonce: String) async throws -> (publicKey: Data, expiresAt: Date)? {
        try await store.write { session in
            guard let row = try session.queryOne("DELETE FROM login_challenges WHERE nonce = ? RETURNING public_key, expires_at", nonce) else {
                return nil
            }
            return (try row.data("public_key"), try row.date("expires_at"))
        }
    }

    /// Stores a login token's hash, and forgets the expired ones.
    func insertLoginToken(digest: String, account: String, expiresAt: Date, now: Date) async throws {
        try await store.write { session in
            try session.execute("DELETE FROM login_tokens WHERE expires_at < ?", now)
            try session.execute("INSERT INTO login_tokens (token_sha256, account, expires_at) VALUES (?, ?, ?)", digest, account, expiresAt)
        }
    }

    /// The account and expiry of the token with this hash, if it was issued.
    func loginToken(digest: String) async throws -> (account: String, expiresAt: Date)? {
        try await store.read { session in
            guard let row = try session.queryOne("SELECT account, expires_at FROM login_tokens WHERE token_sha256 = ?", digest) else { return nil }
            return (try row.string("account"), try row.date("expires_at"))
        }
    }
}
