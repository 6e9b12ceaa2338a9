package import Foundation

/// An invitation into a private network, signed by the gateway: network id, invite id, allowed roles, maximum
/// uses and expiry. The gateway counts uses in its database; the token's `maxUses` only says how many it allows.
package struct InviteToken: Sendable, Equatable {
    package static let kind = "hearth-invite-v1"
    static let keys = ["network", "id", "roles", "max_uses", "expires"]

    /// The network: the id of the gateway that signed it.
    package var network: NodeID
    /// 16 lowercase hex characters, the invite's row in the gateway's database.
    package var id: String
    var roles: [DeviceRole]
    var maxUses: Int
    /// Unix seconds.
    var expiresAt: Int64
    var signature: Data

    /// Signs a new invite with the gateway's key.
    package static func issue(
        gateway: IdentityKey,
        id: String = Hex.random(bytes: 8),
        roles: [DeviceRole] = [.node],
        maxUses: Int,
        expiresAt: Date
    )
        throws -> InviteToken
    {
        var invite = InviteToken(
            network: gateway.nodeID,
            id: id,
            roles: roles,
            maxUses: maxUses,
            expiresAt: Int64(expiresAt.timeIntervalSince1970),
            signature: Data()
        )
        invite.signature = try gateway.sign(invite.payload)
        return invite
    }

    init(network: NodeID, id: String, roles: [DeviceRole], maxUses: Int, expiresAt: Int64, signature: Data) {
        self.network = network
        self.id = id
        self.roles = roles
        self.maxUses = maxUses
        self.expiresAt = expiresAt
        self.signature = signature
    }

    /// The signed bytes.
    var payload: Data {
        SignedToken.payload(
            kind: Self.kind,
            fields: [
                ("network", network.rawValue), ("id", id), ("roles", roles.map(\.rawValue).joined(separator: ":")),
                ("max_uses", String(maxUses)), ("expires", String(expiresAt)),
            ]
        )
    }

    /// The invite as one line of text.
    package var token: String { SignedToken.encode(kind: Self.kind, payload: payload, signature: signature) }

    /// Reads a token; `check` verifies it.
    /// - Throws: `CredentialError` when the token is malformed.
    package init(token: String) throws(CredentialError) {
        let (_, values, signature) = try SignedToken.decode(token, kind: Self.kind, keys: Self.keys)
        let roles = values["roles"]!.split(separator: ":").map { DeviceRole(rawValue: String($0)) }
        guard let network = NodeID(values["network"]!), let id = values["id"], id.utf8.count == 16, Hex.decode(id) != nil,
            !roles.isEmpty, !roles.contains(nil),
            let maxUses = Int(values["max_uses"]!), maxUses >= 1, let expires = Int64(values["expires"]!)
        else { throw .malformed("a field of the invite is invalid") }
        self.init(network: network, id: id, roles: roles.compactMap { $0 }, maxUses: maxUses, expiresAt: expires, signature: signature)
    }

    /// Checks the signature under `gatewayKey` (raw Ed25519 public key), the network, the role and the expiry.
    /// - Throws: `CredentialError` with code `wrongNetwork`, `badSignature`, `roleNotAllowed` or `expired`.
    package func check(gatewayKey: Data, role: DeviceRole, now: Date = Date()) throws(CredentialError) {
        guard network == NodeID(publicKey: gatewayKey) else {
            throw CredentialError(.wrongNetwork, "the invite is for network \(network.short), not this one")
        }
        guard IdentityKey.isValidSignature(signature, of: payload, by: gatewayKey) else { throw .badSignature }
        guard roles.contains(role) else { throw CredentialError(.roleNotAllowed, "the invite does not allow the role \(role.rawValue)") }
        guard Int64(now.timeIntervalSince1970) < expiresAt else { throw .expired }
    }
}
