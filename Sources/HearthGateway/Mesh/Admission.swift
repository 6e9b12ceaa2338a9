import Foundation
import HearthCore

/// Who may join: public networks take any node (new ones rate limited per source address), private ones need an
/// invite the first time. A device certificate, when presented, must be for the proven key, valid and not revoked.
package enum NetworkMode: String, Sendable, CaseIterable {
    case `public`
    case `private`
}

/// Decides whether a node whose key the handshake proved may join, and under which account.
struct Admission: Sendable {
    let gatewayKey: Data
    /// The network's key when this gateway is one of several: invites signed by it are good on every gateway.
    var networkKey: Data? = nil
    let mode: NetworkMode
    let requireDeviceCertificate: Bool
    let database: GatewayDatabase
    /// New nodes per source address on a public network.
    let newNodes: RateLimiter

    /// The account the node serves for (from its device certificate), or `nil` for an uncertified node.
    /// - Throws: `LinkRefusal` saying why the node may not join.
    func admit(_ node: NodeID, hello: LinkHello, address: String?, now: Date = Date()) async throws -> NodeID? {
        var account: NodeID?
        if let token = hello.deviceCertificate {
            let certificate: DeviceCertificate
            do {
                certificate = try DeviceCertificate(token: token)
                try certificate.check(for: node, now: now)
            } catch {
                throw LinkRefusal(reason: "device_certificate_\(error.code)", message: "device certificate refused: \(error.description)")
            }
            if try await database.isRevoked(device: node) {
                throw LinkRefusal(reason: "device_revoked", message: "the account revoked this device's certificate")
            }
            try await database.sawDevice(certificate, now: now)
            account = certificate.account
        } else if requireDeviceCertificate {
            throw LinkRefusal(
                reason: "device_certificate_required",
                message: "this gateway only admits nodes certified by an account: run `hearth keys certify-device`"
            )
        }
        if try await database.isMember(node) { return account }
        switch mode {
        case .private:
            try await redeem(hello.invite, for: node, now: now)
        case .public:
            guard newNodes.take(for: address ?? "?").allowed else {
                throw LinkRefusal(reason: "rate_limited", message: "too many new nodes from this address; try again later", retry: true)
            }
            try await database.addMember(node, now: now)
        }
        return account
    }

    private func redeem(_ token: String?, for node: NodeID, now: Date) async throws {
        guard let token else {
            throw LinkRefusal(reason: "invite_required", message: "this is a private network: join with --invite <token> from its operator")
        }
        let invite: InviteToken
        do {
            invite = try InviteToken(token: token)
            let signer = networkKey.flatMap { invite.network == NodeID(publicKey: $0) ? $0 : nil } ?? gatewayKey
            try invite.check(gatewayKey: signer, role: .node, now: now)
        } catch {
            throw LinkRefusal(reason: "invite_\(error.code)", message: "invite refused: \(error.description)")
        }
        do {
            try await database.redeemInvite(invite.id, for: node, now: now)
        } catch let error as InviteRedemptionError {
            let (reason, message) =
                switch error {
                case .unknown: ("invite_unknown", "this gateway did not issue that invite")
                case .revoked: ("invite_revoked", "the operator revoked that invite")
                case .expired: ("invite_expired", "the invite has expired")
                case .usedUp: ("invite_used_up", "the invite has no uses left")
                }
            throw LinkRefusal(reason: reason, message: message)
        }
    }
}
