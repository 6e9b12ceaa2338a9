package import Foundation
package import HearthCore
import HearthStore

/// An invite the gateway issued. Uses are rows in `invite_uses`, one per node, counted here and never taken
/// from the token.
package struct InviteRecord: Codable, Sendable, Equatable {
    package var id: String
    var roles: String
    package var maxUses: Int
    package var expiresAt: Date
    var createdAt: Date
    package var revokedAt: Date?
    /// Filled in by `invites()`: how many nodes joined with it.
    package var uses: Int?

    package init(id: String, roles: String, maxUses: Int, expiresAt: Date, createdAt: Date = Date(), revokedAt: Date? = nil) {
        self.id = id
        self.roles = roles
        self.maxUses = maxUses
        self.expiresAt = expiresAt
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, roles, uses
        case maxUses = "max_uses"
        case expiresAt = "expires_at"
        case createdAt = "created_at"
        case revokedAt = "revoked_at"
    }

    init(row: SQLRow) throws {
        id = try row.string("id")
        roles = try row.string("roles")
        maxUses = try row.int("max_uses")
        expiresAt = try row.date("expires_at")
        createdAt = try row.date("created_at")
        revokedAt = row.optionalDate("revoked_at")
        uses = row.optionalInt64("uses").map(Int.init)
    }
}

/// A device an account certified, as the gateway saw it.
struct DeviceRecord: Codable, Sendable, Equatable {
    var deviceID: String
    var account: String
    var name: String
    var lastSeen: Date
    var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id"
        case account, name
        case lastSeen = "last_seen"
        case revokedAt = "revoked_at"
    }
}

extension DeviceRecord {
    init(row: SQLRow) throws {
        deviceID = try row.string("device_id")
        account = try row.string("account")
        name = try row.string("name")
        lastSeen = try row.date("last_seen")
        revokedAt = row.optionalDate("revoked_at")
    }
}

/// Why the database refused an invite.
enum InviteRedemptionError: Error, Sendable, Equatable {
    case unknown
    case revoked
    case expired
    case usedUp
}

extension GatewayDatabase {
    static let networkMigration = Migration(
        "v3-network",
        [
            "CREATE TABLE members (node_id TEXT PRIMARY KEY NOT NULL, invite_id TEXT, joined_at {datetime} NOT NULL)",
            """
            CREATE TABLE invites (id TEXT PRIMARY KEY NOT NULL, roles TEXT NOT NULL, max_uses {integer} NOT NULL,
                expires_at {datetime} NOT NULL, created_at {datetime} NOT NULL, revoked_at {datetime})
            """,
            """
            CREATE TABLE invite_uses (invite_id TEXT NOT NULL REFERENCES invites(id), node_id TEXT NOT NULL,
                used_at {datetime} NOT NULL, PRIMARY KEY (invite_id, node_id))
            """,
            """
            CREATE TABLE devices (device_id TEXT PRIMARY KEY NOT NULL, account TEXT NOT NULL, name TEXT NOT NULL,
                last_seen {datetime} NOT NULL, revoked_at {datetime})
            """,
            "CREATE INDEX devices_on_account ON devices (account)",
        ]
    )

    /// Whether `node` joined this network before.
    package func isMember(_ node: NodeID) async throws -> Bool {
        try await store.read { session in
            try session.queryOne("SELECT 1 AS found FROM members WHERE node_id = ?", node.rawValue) != nil
        }
    }

    /// Records `node` as a member (public networks: on first join).
    func addMember(_ node: NodeID, invite: String? = nil, now: Date = Date()) async throws {
        try await store.write { session in
            try session.execute(
                "INSERT INTO members (node_id, invite_id, joined_at) VALUES (?, ?, ?) ON CONFLICT (node_id) DO NOTHING",
                node.rawValue,
                invite,
                now
            )
        }
    }

    /// Spends one use of invite `id` on `node` and makes it a member, in one transaction. A node that already used
    /// this invite does not spend another use. The invite's row is locked while its uses are counted, so gateways
    /// sharing a database cannot both spend its last use.
    /// - Throws: `InviteRedemptionError` when the invite is unknown, revoked, expired or used up.
    func redeemInvite(_ id: String, for node: NodeID, now: Date = Date()) async throws {
        try await store.write { session in
            guard let row = try session.queryOne("SELECT * FROM invites WHERE id = ?" + session.dialect.forUpdate, id) else {
                throw InviteRedemptionError.unknown
            }
            let invite = try InviteRecord(row: row)
            guard invite.revokedAt == nil else { throw InviteRedemptionError.revoked }
            guard invite.expiresAt > now else { throw InviteRedemptionError.expired }
            let alreadyUsed = try session.queryOne("SELECT 1 AS found FROM invite_uses WHERE invite_id = ? AND node_id = ?", id, node.rawValue) != nil
            if !alreadyUsed {
                let uses = try session.queryOne("SELECT COUNT(*) AS uses FROM invite_uses WHERE invite_id = ?", id)?.int("uses") ?? 0
                guard uses < invite.maxUses else { throw InviteRedemptionError.usedUp }
                try session.execute("INSERT INTO invite_uses (invite_id, node_id, used_at) VALUES (?, ?, ?)", id, node.rawValue, now)
            }
            try session.execute(
                "INSERT INTO members (node_id, invite_id, joined_at) VALUES (?, ?, ?) ON CONFLICT (node_id) DO NOTHING",
                node.rawValue,
                id,
                now
            )
        }
    }

    /// Stores a new invite.
    package func insert(_ invite: InviteRecord) async throws {
        try await store.write { session in
            try session.execute(
                "INSERT INTO invites (id, roles, max_uses, expires_at, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
                invite.id,
                invite.roles,
                invite.maxUses,
                invite.expiresAt,
                invite.createdAt,
                invite.revokedAt
            )
        }
    }

    /// Every invite with its use count, newest first.
    package func invites() async throws -> [InviteRecord] {
        try await store.read { session in
            try session.query(
                """
                SELECT invites.*, (SELECT COUNT(*) FROM invite_uses WHERE invite_id = invites.id) AS uses
                FROM invites ORDER BY created_at DESC
                """
            ).map(InviteRecord.init(row:))
        }
    }

    /// Revokes an invite: it admits no new node. Returns whether it existed and was live.
    package func revokeInvite(_ id: String, now: Date = Date()) async throws -> Bool {
        try await store.write { session in
            try session.execute("UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", now, id) > 0
        }
    }

    /// Records that `certificate`'s device linked; refuses nothing.
    package func sawDevice(_ certificate: DeviceCertificate, now: Date = Date()) async throws {
        try await store.write { session in
            try session.execute(
                """
                INSERT INTO devices (device_id, account, name, last_seen) VALUES (?, ?, ?, ?)
                ON CONFLICT (device_id) DO UPDATE SET account = excluded.account, name = excluded.name, last_seen = excluded.last_seen
                """,
                certificate.device.rawValue,
                certificate.account.rawValue,
                certificate.deviceName,
                now
            )
        }
    }

    /// Whether an account revoked `device`.
    package func isRevoked(device: NodeID) async throws -> Bool {
        try await store.read { session in try Self.isRevoked(session, device: device) }
    }

    static func isRevoked(_ session: any SQLSession, device: NodeID) throws -> Bool {
        try session.queryOne("SELECT 1 AS found FROM devices WHERE device_id = ? AND revoked_at IS NOT NULL", device.rawValue) != nil
    }

    /// The devices `account` certified that this gateway has seen.
    func devices(of account: NodeID) async throws -> [DeviceRecord] {
        try await store.read { session in
            try session.query("SELECT * FROM devices WHERE account = ? ORDER BY last_seen DESC", account.rawValue).map(DeviceRecord.init(row:))
        }
    }

    /// Revokes `device` for `account`. Returns `false` when the account never certified that device here.
    package func revoke(device: NodeID, by account: NodeID, now: Date = Date()) async throws -> Bool {
        try await store.write { session in
            try session.execute(
                "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_id = ? AND account = ?",
                now,
                device.rawValue,
                account.rawValue
            ) > 0
        }
    }
}
