/// Where a node dials its gateway and which key the gateway must prove: `host:port#gateway-id`, or, for a network of
/// several gateways, `host:port,host:port#net:network-id`.
///
/// The gateway id is the gateway's NodeID (SHA-256 of its Ed25519 public key), so a join string is enough to reach
/// the right gateway and to refuse any other, whoever answers at that address. A network id is the NodeID of the key
/// the network's gateways share: any gateway it certified is accepted. Addresses are tried in order, each time the
/// node dials (docs/SCALE-OUT.md).
package struct JoinAddress: Sendable, Equatable, CustomStringConvertible {
    package struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        package var host: String
        package var port: Int

        package init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        package var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Which peer the node accepts.
    package enum Pin: Sendable, Equatable {
        case gateway(NodeID)
        case network(NodeID)
    }

    package var endpoints: [Endpoint]
    package var pin: Pin

    package init(host: String, port: Int, gatewayID: NodeID) {
        self.init(endpoints: [Endpoint(host: host, port: port)], pin: .gateway(gatewayID))
    }

    package init(endpoints: [Endpoint], pin: Pin) {
        self.endpoints = endpoints
        self.pin = pin
    }

    /// The one gateway this join string names, or nil when it names a network.
    package var gatewayID: NodeID? {
        if case .gateway(let id) = pin { return id }
        return nil
    }

    /// Parses `host:port[,host:port…]#id` or `…#net:id`; IPv6 hosts go in brackets (`[::1]:7070#…`).
    /// - Throws: `JoinAddressError` naming the part that is wrong.
    package init(parsing text: String) throws(JoinAddressError) {
        guard let hash = text.lastIndex(of: "#") else {
            throw JoinAddressError("'\(text)' has no gateway id: expected host:port#gateway-id")
        }
        var idText = String(text[text.index(after: hash)...])
        let network = idText.hasPrefix("net:")
        if network { idText.removeFirst("net:".count) }
        guard let id = NodeID(idText) else {
            throw JoinAddressError("the \(network ? "network" : "gateway") id in '\(text)' must be 64 lowercase hex characters")
        }
        let list = text[..<hash].split(separator: ",", omittingEmptySubsequences: false)
        guard list.count <= 16 else { throw JoinAddressError("'\(text)' lists more than 16 gateways") }
        var endpoints: [Endpoint] = []
        for address in list {
            guard let colon = address.lastIndex(of: ":") else {
                throw JoinAddressError("'\(address)' in '\(text)' has no port: expected host:port#gateway-id")
            }
            var host = String(address[..<colon])
            if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            guard !host.isEmpty, !host.contains(where: { $0 == "/" || $0 == "#" || $0 == "," || $0.isWhitespace }) else {
                throw JoinAddressError("'\(address)' in '\(text)' has no valid host")
            }
            guard let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
                throw JoinAddressError("the port of '\(address)' in '\(text)' must be a number from 1 to 65535")
            }
            endpoints.append(Endpoint(host: host, port: port))
        }
        self.init(endpoints: endpoints, pin: network ? .network(id) : .gateway(id))
    }

    package var description: String {
        let addresses = endpoints.map(\.description).joined(separator: ",")
        return switch pin {
        case .gateway(let id): "\(addresses)#\(id)"
        case .network(let id): "\(addresses)#net:\(id)"
        }
    }
}

/// A join string could not be read.
package struct JoinAddressError: Error, CustomStringConvertible, Sendable, Equatable {
    package var description: String
    package init(_ description: String) { self.description = description }
}
