import Foundation
public import HearthCore
import HearthMesh

/// The node's identity: an Ed25519 key kept in its data folder, and the NodeID it proves.
public struct NodeIdentity: Sendable {
    public let key: IdentityKey
    public var id: NodeID { key.nodeID }

    public init(key: IdentityKey) {
        self.key = key
    }

    /// The key file inside a node's data folder.
    public static func keyPath(in directory: String) -> String {
        (directory as NSString).appendingPathComponent("node.key")
    }

    /// Loads `node.key` from `directory`, creating it (owner-only, written atomically) on first start.
    /// - Throws: `KeyFileError` when the folder cannot be created or the file is not a usable key; an existing
    ///   file is never replaced.
    public static func loadOrCreate(in directory: String) throws -> NodeIdentity {
        NodeIdentity(key: try KeyFile.loadOrCreate(keyPath(in: directory)))
    }
}

/// A node cannot start; the message says why and what to do.
public struct NodeStartError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
