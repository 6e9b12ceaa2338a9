import Foundation
public import HearthCore

/// The node's identity, kept in its data folder so it survives restarts.
public struct NodeIdentity: Sendable {
    public let id: NodeID

    public init(id: NodeID) {
        self.id = id
    }

    /// Loads `node-id` from `directory`, creating it (owner-only permissions) on first start.
    /// - Throws: when the folder cannot be created or the file holds something that is not a node id.
    public static func loadOrCreate(in directory: String) throws -> NodeIdentity {
        let path = (directory as NSString).appendingPathComponent("node-id")
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            guard let id = NodeID(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw NodeStartError("\(path) does not hold a node id (64 lowercase hex characters); remove it to make a new one")
            }
            return NodeIdentity(id: id)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let id = NodeID.random()
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data((id.rawValue + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else { throw NodeStartError("cannot write \(temporary)") }
        guard rename(temporary, path) == 0 else { throw NodeStartError("cannot move \(temporary) to \(path)") }
        return NodeIdentity(id: id)
    }
}

/// A node cannot start; the message says why and what to do.
public struct NodeStartError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
