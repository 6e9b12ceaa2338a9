package import Foundation

/// A person's account key vouching for one of their devices (a node): account public key, device public key,
/// device name, role, issued-at and expires-at, signed by the account key. Several machines then count for one
/// person, and one device can be revoked without touching the others.
///
/// The gateway accepts it only for the device whose key the link's TLS handshake proved.
package struct DeviceCertificate: Sendable, Equatable {
    package static let kind = "hearth-device-v1"
    static let keys = ["account", "device", "name", "role", "issued", "expires"]

    /// The raw Ed25519 public keys.
    var accountKey: Data
    var deviceKey: Data
    package var deviceName: String
    var role: DeviceRole
    /// Unix seconds.
    var issuedAt: Int64
    var expiresAt: Int64
    var signature: Data

    /// The account's id: the NodeID of its key.
    package var account: NodeID { NodeID(publicKey: accountKey) }
    /// The device's NodeID.
    package var device: NodeID { NodeID(publicKey: deviceKey) }

    /// Signs a certificate for `deviceKey` with `account`.
    package static func issue(
        account: IdentityKey,
        deviceKey: Data,
        deviceName: String,
        role: DeviceRole = .node,
        issuedAt: Date = Date(),
        validFor: TimeInterval
    ) throws -> DeviceCertificate {
        var certificate = DeviceCertificate(
            accountKey: account.publicKey,
            deviceKey: deviceKey,
            deviceName: deviceName,
            role: role,
            issuedAt: Int64(issuedAt.timeIntervalSince1970),
            expiresAt: Int64((issuedAt + validFor).timeIntervalSince1970),
            signature: Data()
        )
        certificate.signature = try account.sign(certificate.payload)
        return certificate
    }

    /// The signed bytes.
    var payload: Data {
        SignedToken.payload(
            kind: Self.kind,
            fields: [
                ("account", Hex.encode(accountKey)), ("device", Hex.encode(deviceKey)),
                ("name", SignedToken.base64url(Data(deviceName.utf8))), ("role", role.rawValue),
                ("issued", String(issuedAt)), ("expires", String(expiresAt)),
            ]
        )
    }

    /// The certificate as one line of text, for files and the wire.
    package var token: String { SignedToken.encode(kind: Self.kind, payload: payload, signature: signature) }

    /// Reads a token. The signature is not checked here: `check` does that.
    /// - Throws: `CredentialError` when the token is malformed.
    package init(token: String) throws(CredentialError) {
        let (_, values, signature) = try SignedToken.decode(token, kind: Self.kind, keys: Self.keys)
        guard let account = Hex.decode(values["account"]!), account.count == 32,
            let device = Hex.decode(values["device"]!), device.count == 32,
            let nameBytes = SignedToken.unbase64url(values["name"]!), let name = String(data: nameBytes, encoding: .utf8),
            let role = DeviceRole(rawValue: values["role"]!),
            let issued = Int64(values["issued"]!), let expires = Int64(values["expires"]!), 0 <= issued, issued <= expires
        else { throw .malformed("a field of the device certificate is invalid") }
        self.init(
            accountKey: account,
            deviceKey: device,
            deviceName: name,
            role: role,
            issuedAt: issued,
            expiresAt: expires,
            signature: signature
        )
    }

    init(accountKey: Data, deviceKey: Data, deviceName: String, role: DeviceRole, issuedAt: Int64, expiresAt: Int64, signature: Data) {
        self.accountKey = accountKey
        self.deviceKey = deviceKey
        self.deviceName = deviceName
        self.role = role
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.signature = signature
    }

    /// Checks the certificate for the device proven as `device`, at `now` (with a minute of clock skew allowed).
    /// - Throws: `CredentialError` with code `wrongDevice`, `badSignature`, `expired` or `notYetValid`.
    package func check(for device: NodeID, now: Date = Date()) throws(CredentialError) {
        guard self.device == device else {
            throw CredentialError(.wrongDevice, "the certificate is for device \(self.device.short), not \(device.short)")
        }
        guard IdentityKey.isValidSignature(signature, of: payload, by: accountKey) else { throw .badSignature }
        let seconds = Int64(now.timeIntervalSince1970)
        guard seconds + 60 >= issuedAt else { throw .notYetValid }
        guard seconds < expiresAt else { throw .expired }
    }
}

/// What a certified device may do.
package enum DeviceRole: String, Sendable, Codable, CaseIterable {
    /// Serve models as a node.
    case node
}
