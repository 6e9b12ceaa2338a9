/// What a node presents when its link comes up (`GET /link/v1/hello`): its credentials. Its identity is the key
/// its TLS handshake proved, so nothing here names it.
package struct LinkHello: Codable, Sendable, Equatable {
    /// A `DeviceCertificate` token, when the owner certified this node with an account key.
    package var deviceCertificate: String?
    /// An `InviteToken`, needed once to join a private network.
    package var invite: String?
    var version: String

    package init(deviceCertificate: String?, invite: String?, version: String) {
        self.deviceCertificate = deviceCertificate
        self.invite = invite
        self.version = version
    }
}

/// Why the gateway refused a node (`POST /link/v1/refused`), sent before it closes the link.
package struct LinkRefusal: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// A short stable code: `invite_required`, `invite_used_up`, `device_revoked`, `expired`, `rate_limited`, …
    package var reason: String
    package var message: String
    /// Whether dialing again later can succeed (a rate limit), or the owner must change something first.
    package var retry: Bool

    package init(reason: String, message: String, retry: Bool = false) {
        self.reason = reason
        self.message = message
        self.retry = retry
    }

    package var description: String { "\(message) (\(reason))" }
}
