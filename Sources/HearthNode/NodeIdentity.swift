import Foundation
package import HearthCore
import HearthMesh

/// The node's identity: an Ed25519 key kept in its data folder, and the NodeID it proves.
package struct NodeIdentity: Sendable {
    let key: IdentityKey
    package var id: NodeID { key.nodeID }

    package init(key: IdentityKey) {
        self.key = key
    }

    /// The key file inside a node's data folder.
    package static func keyPath(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("node.key")
    }

    /// Loads `node.key` from `directory`, creating it (owner-only, written atomically) on first start.
    /// - Throws: `KeyFileError` when the folder cannot be created or the file is not a usable key; an existing
    ///   file is never replaced.
    static func loadOrCreate(in directory: String) throws -> NodeIdentity {
        NodeIdentity(key: try KeyFile.loadOrCreate(keyPath(in: directory)))
    }
}

/// A node cannot start; the message says why and what to do.
struct NodeStartError: Error, CustomStringConvertible, Sendable {
    var description: String
    init(_ description: String) { self.description = description }
}
