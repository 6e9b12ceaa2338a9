/// Where a node dials its gateway and which key the gateway must prove: `host:port#gateway-id`.
///
/// The gateway id is the gateway's NodeID (SHA-256 of its Ed25519 public key), so a join string is enough to
/// reach the right gateway and to refuse any other, whoever answers at that address.
public struct JoinAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var gatewayID: NodeID

    public init(host: String, port: Int, gatewayID: NodeID) {
        self.host = host
        self.port = port
        self.gatewayID = gatewayID
    }

    /// Parses `host:port#id`; IPv6 hosts go in brackets (`[::1]:7070#…`).
    /// - Throws: `JoinAddressError` naming the part that is wrong.
    public init(parsing text: String) throws(JoinAddressError) {
        guard let hash = text.lastIndex(of: "#") else {
            throw JoinAddressError("'\(text)' has no gateway id: expected host:port#gateway-id")
        }
        guard let id = NodeID(String(text[text.index(after: hash)...])) else {
            throw JoinAddressError("the gateway id in '\(text)' must be 64 lowercase hex characters")
        }
        let address = text[..<hash]
        guard let colon = address.lastIndex(of: ":") else {
            throw JoinAddressError("'\(text)' has no port: expected host:port#gateway-id")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, !host.contains(where: { $0 == "/" || $0 == "#" || $0.isWhitespace }) else {
            throw JoinAddressError("'\(text)' has no valid host")
        }
        guard let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
            throw JoinAddressError("the port in '\(text)' must be a number from 1 to 65535")
        }
        self.init(host: host, port: port, gatewayID: id)
    }

    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(shownHost):\(port)#\(gatewayID)"
    }
}

/// A join string could not be read.
public struct JoinAddressError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
