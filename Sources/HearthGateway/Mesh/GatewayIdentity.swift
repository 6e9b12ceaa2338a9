import Foundation
package import HearthCore
import HearthMesh

/// The gateway's own Ed25519 identity, which nodes pin through the join string.
package enum GatewayIdentity {
    /// The key file inside a gateway's data folder.
    static func keyPath(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("gateway.key")
    }

    /// Loads `gateway.key` from `directory`, creating it on first start; without a folder (tests) the key is
    /// new and lives only in memory.
    /// - Throws: `KeyFileError` when the file exists but is not a usable key.
    package static func loadOrCreate(in directory: String?) throws -> IdentityKey {
        guard let directory else { return IdentityKey.generate() }
        try KeyFile.createPrivateDirectory(directory)
        return try KeyFile.loadOrCreate(keyPath(in: directory))
    }
}
