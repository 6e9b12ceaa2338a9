import Foundation
import Testing

@testable import HearthCore

struct DeviceCertificateTests {
    let account = IdentityKey.generate()
    let device = IdentityKey.generate()
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func issue(name: String = "lab-pc 3", issuedAt: Date? = nil, days: Double = 30) throws -> DeviceCertificate {
        try DeviceCertificate.issue(
            account: account,
            deviceKey: device.publicKey,
            deviceName: name,
            issuedAt: issuedAt ?? now,
            validFor: days * 86400
        )
    }

    @Test func roundTripsThroughItsTokenAndChecks() throws {
        let certificate = try issue(name: "Ana's laptop\nrole=admin")
        let read = try DeviceCertificate(token: certificate.token)
        #expect(read == certificate)
        #expect(read.deviceName == "Ana's laptop\nrole=admin")
        #expect(read.account == account.nodeID)
        #expect(read.device == device.nodeID)
        try read.check(for: device.nodeID, now: now + 3600)
    }

    @Test func refusesAnotherDeviceExpiryAndTheFuture() throws {
        let certificate = try issue()
        let wrongDevice = #expect(throws: CredentialError.self) { try certificate.check(for: IdentityKey.generate().nodeID, now: now) }
        #expect(wrongDevice?.code == .wrongDevice && wrongDevice?.code.description == "wrong_device")
        #expect(throws: CredentialError.expired) { try certificate.check(for: device.nodeID, now: now + 31 * 86400) }
        #expect(throws: CredentialError.notYetValid) { try certificate.check(for: device.nodeID, now: now - 3600) }
    }

    @Test func refusesATamperedOrForeignSignature() throws {
        var renamed = try issue()
        renamed.deviceName = "someone else's"
        #expect(throws: CredentialError.badSignature) { try renamed.check(for: device.nodeID, now: now) }

        var extended = try issue()
        extended.expiresAt += 365 * 86400
        #expect(throws: CredentialError.badSignature) { try extended.check(for: device.nodeID, now: now) }

        // Another account's signature over the same fields, claiming to be from `account`.
        var forged = try issue()
        forged.signature = try IdentityKey.generate().sign(forged.payload)
        #expect(throws: CredentialError.badSignature) { try forged.check(for: device.nodeID, now: now) }

        var flipped = try issue()
        flipped.signature[5] ^= 0x01
        #expect(throws: CredentialError.badSignature) { try DeviceCertificate(token: flipped.token).check(for: device.nodeID, now: now) }
    }

    @Test func base64urlIsRFC4648WithoutPaddingAndRoundTrips() throws {
        // RFC 4648 §10's vectors, unpadded; then bytes that map to '-' and '_' (62 and 63).
        let vectors = ["": "", "f": "Zg", "fo": "Zm8", "foo": "Zm9v", "foob": "Zm9vYg", "fooba": "Zm9vYmE", "foobar": "Zm9vYmFy"]
        for (plain, encoded) in vectors { #expect(SignedToken.base64url(Data(plain.utf8)) == encoded) }
        #expect(SignedToken.base64url(Data([0xFB, 0xFF, 0xBF])) == "-_-_")
        // Every length and every byte value: the same text as Foundation's encoder with the URL alphabet, and back.
        let bytes = Data((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
        for length in 0...bytes.count {
            let data = bytes.prefix(length)
            let reference = data.base64EncodedString().map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 }.filter { $0 != "=" }
            let encoded = SignedToken.base64url(Data(data))
            #expect(encoded == String(reference))
            #expect(SignedToken.unbase64url(encoded) == Data(data))
        }
        #expect(SignedToken.base64url(bytes.dropFirst(7)) == SignedToken.base64url(Data(bytes.dropFirst(7))))
        // Decoding agrees with Foundation's decoder on the same text in the standard alphabet, for any text of the
        // URL alphabet and of characters outside it (padding, '+', '/', '.', space), of any length.
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        var generator = SystemRandomNumberGenerator()
        for round in 0..<3000 {
            var text = String((0..<Int.random(in: 0...24, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
            if round % 3 == 0, !text.isEmpty {
                let foreign: [Character] = ["=", "+", "/", ".", " ", ":", "é"]
                let at = text.index(text.startIndex, offsetBy: Int.random(in: 0..<text.count, using: &generator))
                text.replaceSubrange(at...at, with: String(foreign.randomElement(using: &generator)!))
            }
            let standard = text.map { $0 == "-" ? "+" : $0 == "_" ? "/" : $0 }
            let padded = String(standard) + String(repeating: "=", count: (4 - text.utf8.count % 4) % 4)
            let foundation = text.contains(where: { "=+/".contains($0) }) ? nil : Data(base64Encoded: padded)
            #expect(SignedToken.unbase64url(text) == foundation, "\(text)")
        }
    }

    @Test func refusesMalformedTokensWithoutCrashing() throws {
        let token = try issue().token
        let parts = token.split(separator: ".").map(String.init)
        let payload = String(decoding: SignedToken.unbase64url(parts[1])!, as: UTF8.self)
        func rebuilt(_ text: String) -> String { "\(parts[0]).\(SignedToken.base64url(Data(text.utf8))).\(parts[2])" }
        let bad = [
            "", "hearth-device-v1", "hearth-device-v1..", token + ".x", "hearth-invite-v1." + parts[1] + "." + parts[2],
            parts[0] + ".%%%." + parts[2], parts[0] + "." + parts[1] + ".AAAA",
            String(repeating: "a", count: SignedToken.maxLength + 1),
            rebuilt(payload.replacingOccurrences(of: "role=node", with: "role=admin")),
            rebuilt(payload.replacingOccurrences(of: "\nrole=node", with: "")),
            rebuilt(payload + "extra=1\n"),
            rebuilt(payload.replacingOccurrences(of: "issued=", with: "issued=-")),
            rebuilt(payload.replacingOccurrences(of: "account=", with: "account=zz")),
            rebuilt(payload.replacingOccurrences(of: "role=node", with: "role=no de")),
        ]
        for text in bad {
            #expect(throws: CredentialError.self, "\(text.prefix(60))") { try DeviceCertificate(token: text) }
        }
    }
}

struct InviteTokenTests {
    let gateway = IdentityKey.generate()
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func roundTripsAndChecksUnderTheGatewayKey() throws {
        let invite = try InviteToken.issue(gateway: gateway, maxUses: 3, expiresAt: now + 86400)
        let read = try InviteToken(token: invite.token)
        #expect(read == invite)
        #expect(read.network == gateway.nodeID)
        #expect(read.id.count == 16)
        try read.check(gatewayKey: gateway.publicKey, role: .node, now: now)
    }

    @Test func refusesAnotherNetworkAForgeryAndExpiry() throws {
        let invite = try InviteToken.issue(gateway: gateway, maxUses: 3, expiresAt: now + 86400)
        let other = IdentityKey.generate()
        let wrongNetwork = #expect(throws: CredentialError.self) { try invite.check(gatewayKey: other.publicKey, role: .node, now: now) }
        #expect(wrongNetwork?.code == .wrongNetwork)
        #expect(throws: CredentialError.expired) { try invite.check(gatewayKey: gateway.publicKey, role: .node, now: now + 86400) }

        // Someone else signs an invite naming this gateway's network.
        var forged = try InviteToken.issue(gateway: other, maxUses: 100, expiresAt: now + 86400)
        forged.network = gateway.nodeID
        forged.signature = try other.sign(forged.payload)
        #expect(throws: CredentialError.badSignature) { try forged.check(gatewayKey: gateway.publicKey, role: .node, now: now) }

        var raised = invite
        raised.maxUses = 1000
        #expect(throws: CredentialError.badSignature) {
            try InviteToken(token: raised.token).check(gatewayKey: gateway.publicKey, role: .node, now: now)
        }
    }
}
