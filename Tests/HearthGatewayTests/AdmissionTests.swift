import Foundation
import HearthTesting
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Who may join, decided against a real SQLite file.
struct AdmissionTests {
    let gateway = IdentityKey.generate()
    let account = IdentityKey.generate()
    let now = Date()

    func admission(_ mode: NetworkMode, requireCertificate: Bool = false, burst: Int = 10) async throws -> Admission {
        let database = try GatewayDatabase.open(directory: try TestEnvironment.temporaryDirectory("admission"))
        try await database.migrate()
        return Admission(
            gatewayKey: gateway.publicKey,
            mode: mode,
            requireDeviceCertificate: requireCertificate,
            database: database,
            newNodes: RateLimiter(capacity: burst, period: .seconds(3600))
        )
    }

    func hello(certificate: DeviceCertificate? = nil, invite: String? = nil) -> LinkHello {
        LinkHello(deviceCertificate: certificate?.token, invite: invite, version: "test")
    }

    func refusal(_ body: () async throws -> NodeID?) async -> LinkRefusal? {
        do {
            _ = try await body()
            return nil
        } catch {
            return error as? LinkRefusal
        }
    }

    @Test func aCertifiedNodeJoinsForItsAccountAndOnlyAsItself() async throws {
        let admission = try await admission(.public, requireCertificate: true)
        let node = IdentityKey.generate()
        let certificate = try DeviceCertificate.issue(account: account, deviceKey: node.publicKey, deviceName: "a", validFor: 86400)
        #expect(try await admission.admit(node.nodeID, hello: hello(certificate: certificate), address: "10.0.0.1") == account.nodeID)

        // Another node presenting that certificate is refused: it is not the key the handshake proved.
        let other = IdentityKey.generate().nodeID
        #expect(
            await refusal { try await admission.admit(other, hello: hello(certificate: certificate), address: "10.0.0.1") }?.reason
                == "device_certificate_wrong_device"
        )
        #expect(await refusal { try await admission.admit(other, hello: hello(), address: "10.0.0.1") }?.reason == "device_certificate_required")
    }

    @Test func expiredForgedAndRevokedCertificatesAreRefused() async throws {
        let admission = try await admission(.public)
        let node = IdentityKey.generate()
        let expired = try DeviceCertificate.issue(
            account: account,
            deviceKey: node.publicKey,
            deviceName: "a",
            issuedAt: now - 10 * 86400,
            validFor: 86400
        )
        #expect(
            await refusal { try await admission.admit(node.nodeID, hello: hello(certificate: expired), address: nil) }?.reason
                == "device_certificate_expired"
        )

        var forged = try DeviceCertificate.issue(account: account, deviceKey: node.publicKey, deviceName: "a", validFor: 86400)
        forged.signature = try IdentityKey.generate().sign(forged.payload)
        #expect(
            await refusal { try await admission.admit(node.nodeID, hello: hello(certificate: forged), address: nil) }?.reason
                == "device_certificate_bad_signature"
        )

        let valid = try DeviceCertificate.issue(account: account, deviceKey: node.publicKey, deviceName: "a", validFor: 86400)
        #expect(try await admission.admit(node.nodeID, hello: hello(certificate: valid), address: nil) == account.nodeID)
        // Only the certifying account can revoke it.
        #expect(try await admission.database.revoke(device: node.nodeID, by: IdentityKey.generate().nodeID) == false)
        #expect(try await admission.database.revoke(device: node.nodeID, by: account.nodeID))
        #expect(await refusal { try await admission.admit(node.nodeID, hello: hello(certificate: valid), address: nil) }?.reason == "device_revoked")
    }

    @Test func aPrivateNetworkCountsInviteUsesOnTheServer() async throws {
        let admission = try await admission(.private)
        let invite = try InviteToken.issue(gateway: gateway, maxUses: 1, expiresAt: now + 3600)
        try await admission.database.insert(InviteRecord(id: invite.id, roles: "node", maxUses: 1, expiresAt: now + 3600))
        let first = IdentityKey.generate().nodeID
        let second = IdentityKey.generate().nodeID

        #expect(await refusal { try await admission.admit(first, hello: hello(), address: nil) }?.reason == "invite_required")
        #expect(try await admission.admit(first, hello: hello(invite: invite.token), address: nil) == nil)
        // The same node again spends nothing, and a member needs no invite any more.
        #expect(try await admission.admit(first, hello: hello(invite: invite.token), address: nil) == nil)
        #expect(try await admission.admit(first, hello: hello(), address: nil) == nil)
        // The one use is spent.
        #expect(await refusal { try await admission.admit(second, hello: hello(invite: invite.token), address: nil) }?.reason == "invite_used_up")
        #expect(try await admission.database.invites().first?.uses == 1)
    }

    @Test func expiredRevokedUnknownAndForeignInvitesAreRefused() async throws {
        let admission = try await admission(.private)
        let node = IdentityKey.generate().nodeID
        let expired = try InviteToken.issue(gateway: gateway, maxUses: 5, expiresAt: now - 1)
        try await admission.database.insert(InviteRecord(id: expired.id, roles: "node", maxUses: 5, expiresAt: now - 1))
        #expect(await refusal { try await admission.admit(node, hello: hello(invite: expired.token), address: nil) }?.reason == "invite_expired")

        let revoked = try InviteToken.issue(gateway: gateway, maxUses: 5, expiresAt: now + 3600)
        try await admission.database.insert(InviteRecord(id: revoked.id, roles: "node", maxUses: 5, expiresAt: now + 3600))
        #expect(try await admission.database.revokeInvite(revoked.id))
        #expect(await refusal { try await admission.admit(node, hello: hello(invite: revoked.token), address: nil) }?.reason == "invite_revoked")

        // Signed by this gateway but never stored (another database), or signed by another gateway.
        let unknown = try InviteToken.issue(gateway: gateway, maxUses: 5, expiresAt: now + 3600)
        #expect(await refusal { try await admission.admit(node, hello: hello(invite: unknown.token), address: nil) }?.reason == "invite_unknown")
        let foreign = try InviteToken.issue(gateway: IdentityKey.generate(), maxUses: 5, expiresAt: now + 3600)
        #expect(
            await refusal { try await admission.admit(node, hello: hello(invite: foreign.token), address: nil) }?.reason == "invite_wrong_network"
        )
        #expect(await refusal { try await admission.admit(node, hello: hello(invite: "garbage"), address: nil) }?.reason == "invite_malformed")
    }

    @Test func aPublicNetworkRateLimitsNewNodesPerAddress() async throws {
        let admission = try await admission(.public, burst: 2)
        let members = [IdentityKey.generate().nodeID, IdentityKey.generate().nodeID]
        for node in members { #expect(try await admission.admit(node, hello: hello(), address: "203.0.113.7") == nil) }
        let refused = await refusal { try await admission.admit(IdentityKey.generate().nodeID, hello: hello(), address: "203.0.113.7") }
        #expect(refused?.reason == "rate_limited")
        #expect(refused?.retry == true)
        // Known nodes still join, and other addresses have their own allowance.
        #expect(try await admission.admit(members[0], hello: hello(), address: "203.0.113.7") == nil)
        #expect(try await admission.admit(IdentityKey.generate().nodeID, hello: hello(), address: "198.51.100.1") == nil)
    }
}
