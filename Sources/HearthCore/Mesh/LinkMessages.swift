/// What a node presents when its link comes up (`GET /link/v1/hello`): its credentials. Its identity is the key
/// its TLS handshake proved, so nothing here names it.
public struct LinkHello: Codable, Sendable, Equatable {
    /// A `DeviceCertificate` token, when the owner certified this node with an account key.
    public var deviceCertificate: String?
    /// An `InviteToken`, needed once to join a private network.
    public var invite: String?
    public var version: String

    public init(deviceCertificate: String?, invite: String?, version: String) {
        self.deviceCertificate = deviceCertificate
        self.invite = invite
        self.version = version
    }
}

/// Why the gateway refused a node (`POST /link/v1/refused`), sent before it closes the link.
public struct LinkRefusal: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// A short stable code: `invite_required`, `invite_used_up`, `device_revoked`, `expired`, `rate_limited`, …
    public var reason: String
    public var message: String
    /// Whether dialing again later can succeed (a rate limit), or the owner must change something first.
    public var retry: Bool

    public init(reason: String, message: String, retry: Bool = false) {
        self.reason = reason
        self.message = message
        self.retry = retry
    }

    public var description: String { "\(message) (\(reason))" }
}
