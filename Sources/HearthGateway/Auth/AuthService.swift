import Crypto
import Foundation
import HearthCore

/// Logins, bearer tokens and API keys.
///
/// Challenges, tokens and API keys are kept in the database, tokens and keys as SHA-256 hashes only (a copy of the
/// database hands out no working credential). Gateways sharing a database therefore share logins: a token issued by
/// one works on all, and a nonce is spent once wherever it is presented.
final class AuthService: Sendable {
    private let database: GatewayDatabase
    private let challengeTTL: TimeInterval
    private let tokenTTL: TimeInterval
    private let now: @Sendable () -> Date

    init(database: GatewayDatabase, challengeTTL: Duration, tokenTTL: Duration, now: @escaping @Sendable () -> Date = Date.init) {
        self.database = database
        self.challengeTTL = challengeTTL.seconds
        self.tokenTTL = tokenTTL.seconds
        self.now = now
    }

    /// Issues a single-use nonce for `publicKey` (raw 32 bytes).
    func challenge(publicKey: Data) async throws -> (nonce: String, expiresAt: Date) {
        guard publicKey.count == 32 else {
            throw APIFailure(.invalidRequest, "'public_key' must be a base64 Ed25519 public key (32 bytes).", param: "public_key")
        }
        let nonce = Hex.random(bytes: 32)
        let time = now()
        let expiresAt = time.addingTimeInterval(challengeTTL)
        try await database.insertChallenge(nonce: nonce, publicKey: publicKey, expiresAt: expiresAt, now: time)
        return (nonce, expiresAt)
    }

    /// Checks a signed challenge and returns a bearer token. The nonce is spent whatever the outcome.
    /// - Throws: `APIFailure` 401 for an unknown, spent or expired nonce, a nonce issued to another key, or a bad signature.
    func verify(publicKey: Data, nonce: String, signature: Data) async throws -> (token: String, expiresAt: Date, user: NodeID) {
        let challenge = try await database.takeChallenge(nonce: nonce)
        let time = now()
        guard let challenge else {
            throw APIFailure(.authentication, "Unknown or already used nonce; ask for a new challenge.", param: "nonce", code: "invalid_nonce")
        }
        guard time <= challenge.expiresAt else {
            throw APIFailure(.authentication, "The challenge expired; ask for a new one.", param: "nonce", code: "expired_nonce")
        }
        guard challenge.publicKey == publicKey else {
            throw APIFailure(.authentication, "This nonce was issued to another key.", param: "nonce", code: "invalid_nonce")
        }
        guard IdentityKey.isValidSignature(signature, of: LoginProtocol.message(nonce: nonce), by: publicKey) else {
            throw APIFailure(.authentication, "The signature does not verify.", param: "signature", code: "invalid_signature")
        }
        let user = NodeID(publicKey: publicKey)
        let token = "ht_" + Hex.random(bytes: 32)
        let expiresAt = time.addingTimeInterval(tokenTTL)
        try await database.insertLoginToken(digest: Self.digest(token), account: user.rawValue, expiresAt: expiresAt, now: time)
        return (token, expiresAt, user)
    }

    /// The caller a bearer credential (login token or API key) stands for.
    /// - Throws: `APIFailure` 401 for an unknown, expired or revoked credential.
    func caller(forBearer credential: String) async throws -> Caller {
        let digest = Self.digest(credential)
        if credential.hasPrefix("ht_") {
            let session = try await database.loginToken(digest: digest)
            guard let session, now() <= session.expiresAt, let user = NodeID(session.account) else {
                throw APIFailure(.authentication, "The token is unknown or expired; log in again.", code: "invalid_token")
            }
            return .user(user)
        }
        guard let key = try await database.apiKey(secretDigest: digest), key.revokedAt == nil, let owner = NodeID(key.owner) else {
            throw APIFailure(.authentication, "The API key is unknown or revoked.", code: "invalid_api_key")
        }
        return .apiKey(id: key.id, owner: owner)
    }

    /// Creates an API key for `owner`; the secret is returned once and only its hash is stored.
    func createAPIKey(owner: NodeID, name: String) async throws -> (record: APIKeyRecord, secret: String) {
        let secret = "hk_" + Hex.random(bytes: 32)
        let record = APIKeyRecord(
            id: Hex.random(bytes: 8),
            owner: owner.rawValue,
            name: name,
            secretDigest: Self.digest(secret),
            createdAt: now(),
            revokedAt: nil
        )
        try await database.insert(record)
        return (record, secret)
    }

    /// Whether `credential` has the shape of a Hearth login token or API key.
    static func isHearthCredential(_ credential: String) -> Bool {
        credential.hasPrefix("ht_") || credential.hasPrefix("hk_")
    }

    static func digest(_ secret: String) -> String {
        Hex.encode(SHA256.hash(data: Data(secret.utf8)))
    }
}
