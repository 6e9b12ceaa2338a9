public import Foundation
public import GRDB
public import HearthCore

/// An invite the gateway issued. Uses are rows in `invite_uses`, one per node, counted here and never taken
/// from the token.
public struct InviteRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "invites"

    public var id: String
    public var roles: String
    public var maxUses: Int
    public var expiresAt: Date
    public var createdAt: Date
    public var revokedAt: Date?
    /// Filled in by `invites()`: how many nodes joined with it.
    public var uses: Int?

    public init(id: String, roles: String, maxUses: Int, expiresAt: Date, createdAt: Date = Date(), revokedAt: Date? = nil) {
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

    public func encode(to container: inout PersistenceContainer) throws {
        container["id"] = id
        container["roles"] = roles
        container["max_uses"] = maxUses
        container["expires_at"] = expiresAt
        container["created_at"] = createdAt
        container["revoked_at"] = revokedAt
    }
}

/// A device an account certified, as the gateway saw it.
public struct DeviceRecord: Codable, Sendable, Equatable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "devices"

    public var deviceID: String
    public var account: String
    public var name: String
    public var lastSeen: Date
    public var revokedAt: Date?

    enum CodingKeys: String, CodingKey {
        case deviceID = "device_id"
        case account, name
        case lastSeen = "last_seen"
        case revokedAt = "revoked_at"
    }
}

/// Why the database refused an invite.
public enum InviteRedemptionError: Error, Sendable, Equatable {
    case unknown
    case revoked
    case expired
    case usedUp
}

extension GatewayDatabase {
    static func registerNetworkMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v3-network") { db in
            try db.create(table: "members") { table in
                table.column("node_id", .text).primaryKey()
                table.column("invite_id", .text)
                table.column("joined_at", .datetime).notNull()
            }
            try db.create(table: "invites") { table in
                table.column("id", .text).primaryKey()
                table.column("roles", .text).notNull()
                table.column("max_uses", .integer).notNull()
                table.column("expires_at", .datetime).notNull()
                table.column("created_at", .datetime).notNull()
                table.column("revoked_at", .datetime)
            }
            try db.create(table: "invite_uses") { table in
                table.column("invite_id", .text).notNull().references("invites")
                table.column("node_id", .text).notNull()
                table.column("used_at", .datetime).notNull()
                table.primaryKey(["invite_id", "node_id"])
            }
            try db.create(table: "devices") { table in
                table.column("device_id", .text).primaryKey()
                table.column("account", .text).notNull().indexed()
                table.column("name", .text).notNull()
                table.column("last_seen", .datetime).notNull()
                table.column("revoked_at", .datetime)
            }
        }
    }

    /// Whether `node` joined this network before.
    public func isMember(_ node: NodeID) async throws -> Bool {
        try await writer.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM members WHERE node_id = ?)", arguments: [node.rawValue]) ?? false
        }
    }

    /// Records `node` as a member (public networks: on first join).
    public func addMember(_ node: NodeID, invite: String? = nil, now: Date = Date()) async throws {
        try await writer.write { db in
            try db.execute(
                sql: "INSERT OR IGNORE INTO members (node_id, invite_id, joined_at) VALUES (?, ?, ?)",
                arguments: [node.rawValue, invite, now]
            )
        }
    }

    /// Spends one use of invite `id` on `node` and makes it a member, in one transaction. A node that already used
    /// this invite does not spend another use.
    /// - Throws: `InviteRedemptionError` when the invite is unknown, revoked, expired or used up.
    public func redeemInvite(_ id: String, for node: NodeID, now: Date = Date()) async throws {
        try await writer.write { db in
            guard let invite = try InviteRecord.fetchOne(db, key: id) else { throw InviteRedemptionError.unknown }
            guard invite.revokedAt == nil else { throw InviteRedemptionError.revoked }
            guard invite.expiresAt > now else { throw InviteRedemptionError.expired }
            let alreadyUsed =
                try Bool.fetchOne(
                    db,
                    sql: "SELECT EXISTS(SELECT 1 FROM invite_uses WHERE invite_id = ? AND node_id = ?)",
                    arguments: [id, node.rawValue]
                ) ?? false
            if !alreadyUsed {
                let uses = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM invite_uses WHERE invite_id = ?", arguments: [id]) ?? 0
                guard uses < invite.maxUses else { throw InviteRedemptionError.usedUp }
                try db.execute(
                    sql: "INSERT INTO invite_uses (invite_id, node_id, used_at) VALUES (?, ?, ?)",
                    arguments: [id, node.rawValue, now]
                )
            }
            try db.execute(
                sql: "INSERT OR IGNORE INTO members (node_id, invite_id, joined_at) VALUES (?, ?, ?)",
                arguments: [node.rawValue, id, now]
            )
        }
    }

    /// Stores a new invite.
    public func insert(_ invite: InviteRecord) async throws {
        try await writer.write { db in try invite.insert(db) }
    }

    /// Every invite with its use count, newest first.
    public func invites() async throws -> [InviteRecord] {
        try await writer.read { db in
            try InviteRecord.fetchAll(
                db,
                sql: """
                    SELECT invites.*, (SELECT COUNT(*) FROM invite_uses WHERE invite_id = invites.id) AS uses
                    FROM invites ORDER BY created_at DESC
                    """
            )
        }
    }

    /// Revokes an invite: it admits no new node. Returns whether it existed and was live.
    public func revokeInvite(_ id: String, now: Date = Date()) async throws -> Bool {
        try await writer.write { db in
            try db.execute(sql: "UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", arguments: [now, id])
            return db.changesCount > 0
        }
    }

    /// Records that `certificate`'s device linked; refuses nothing.
    public func sawDevice(_ certificate: DeviceCertificate, now: Date = Date()) async throws {
        try await writer.write { db in
            try db.execute(
                sql: """
                    INSERT INTO devices (device_id, account, name, last_seen) VALUES (?, ?, ?, ?)
                    ON CONFLICT(device_id) DO UPDATE SET account = excluded.account, name = excluded.name, last_seen = excluded.last_seen
                    """,
                arguments: [certificate.device.rawValue, certificate.account.rawValue, certificate.deviceName, now]
            )
        }
    }

    /// Whether an account revoked `device`.
    public func isRevoked(device: NodeID) async throws -> Bool {
        try await writer.read { db in
            try Bool.fetchOne(
                db,
                sql: "SELECT EXISTS(SELECT 1 FROM devices WHERE device_id = ? AND revoked_at IS NOT NULL)",
                arguments: [device.rawValue]
            ) ?? false
        }
    }

    /// The devices `account` certified that this gateway has seen.
    public func devices(of account: NodeID) async throws -> [DeviceRecord] {
        try await writer.read { db in
            try DeviceRecord.filter(Column("account") == account.rawValue).order(Column("last_seen").desc).fetchAll(db)
        }
    }

    /// Revokes `device` for `account`. Returns `false` when the account never certified that device here.
    public func revoke(device: NodeID, by account: NodeID, now: Date = Date()) async throws -> Bool {
        try await writer.write { db in
            try db.execute(
                sql: "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?) WHERE device_id = ? AND account = ?",
                arguments: [now, device.rawValue, account.rawValue]
            )
            return db.changesCount > 0
        }
    }
}
