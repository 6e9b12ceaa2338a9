package import Foundation

/// Challenge/response login: the gateway hands out a single-use nonce for a public key; the holder of the private
/// key signs `message(nonce:)` and trades the signature for a short-lived bearer token.
package enum LoginProtocol {
    /// The bytes a client signs to log in with `nonce`. The domain prefix keeps a login signature from being reused
    /// as any other kind of signed record.
    package static func message(nonce: String) -> Data {
        Data("hearth-login-v1:\(nonce)".utf8)
    }
}

/// Who is making a request, as the gateway established it.
package enum Caller: Sendable, Equatable {
    case anonymous
    /// A person logged in with their key; the id is the SHA-256 of their public key.
    case user(NodeID)
    /// An app using an API key that `owner` created.
    case apiKey(id: String, owner: NodeID)

    /// How receipts and the ledger name the caller: `anonymous`, `user:<account id>` or `key:<api key id>`.
    package var consumerName: String {
        switch self {
        case .anonymous: "anonymous"
        case .user(let id): "user:\(id.rawValue)"
        case .apiKey(let id, _): "key:\(id)"
        }
    }

    /// The account behind the caller, if any.
    package var account: NodeID? {
        switch self {
        case .anonymous: nil
        case .user(let id): id
        case .apiKey(_, let owner): owner
        }
    }
}
