import Foundation

/// A home network for real, for tests: a LAN namespace behind a router namespace that masquerades (NAT) onto a
/// veth link to this host, with no route back in. A node in the LAN can dial this host; this host cannot reach it.
///
///     this host 10.231.0.1 ── veth ── 10.231.0.2 router (NAT, drops new inbound) 10.231.1.1 ── veth ── 10.231.1.2 node
///
/// It needs root, `ip` (iproute2) and `nft` (nftables), and a kernel that allows network namespaces.
package final class NATNetwork: Sendable {
    /// Where this host listens for the LAN.
    package let hostAddress = "10.231.0.1"
    /// The router's outside address: what this host sees as the node's address.
    package let routerAddress = "10.231.0.2"
    /// The node's own address, private to the LAN.
    package let nodeAddress = "10.231.1.2"
    /// The LAN namespace, where the node runs.
    package let lanNamespace: String
    private let routerNamespace: String

    /// Runs `command` inside the LAN namespace.
    package func launcher(_ command: [String]) -> [String] {
        ["/usr/sbin/ip", "netns", "exec", lanNamespace] + command
    }

    /// Builds the namespaces. Stale ones from an earlier, killed run are removed first.
    /// - Throws: `NATUnavailable` with the reason when this machine cannot make them.
    package init() throws {
        let tag = String(getpid() % 100_000)
        routerNamespace = "hearth-rt-\(tag)"
        lanNamespace = "hearth-lan-\(tag)"
        guard getuid() == 0 else { throw NATUnavailable("network namespaces need root") }
        for tool in ["/usr/sbin/ip", "/usr/sbin/nft"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw NATUnavailable("\(tool) is missing (Debian: apt-get install iproute2 nftables)")
        }
        for stale in (try? Self.run(["netns", "list"]).split(separator: "\n")) ?? [] {
            let name = String(stale.split(separator: " ").first ?? "")
            if name.hasPrefix("hearth-rt-") || name.hasPrefix("hearth-lan-") { _ = try? Self.run(["netns", "del", name]) }
        }
        do {
            try Self.run(["netns", "add", routerNamespace])
        } catch {
            throw NATUnavailable("the kernel refused a network namespace: \(error)")
        }
        do {
            try build(tag: tag)
        } catch {
            remove()
            throw error
        }
    }

    private func build(tag: String) throws {
        let (wanHost, wanRouter, lanRouter, lanNode) = ("hgw\(tag)", "hwan\(tag)", "hlan\(tag)", "hnode\(tag)")
        let rt = ["-n", routerNamespace]
        let lan = ["-n", lanNamespace]
        for arguments in [
            ["netns", "add", lanNamespace],
            ["link", "add", wanHost, "type", "veth", "peer", "name", wanRouter],
            ["link", "set", wanRouter, "netns", routerNamespace],
            ["addr", "add", "\(hostAddress)/24", "dev", wanHost],
            ["link", "set", wanHost, "up"],
            rt + ["link", "set", "lo", "up"],
            rt + ["addr", "add", "\(routerAddress)/24", "dev", wanRouter],
            rt + ["link", "set", wanRouter, "up"],
            rt + ["link", "add", lanRouter, "type", "veth", "peer", "name", lanNode],
            rt + ["link", "set", lanNode, "netns", lanNamespace],
            rt + ["addr", "add", "10.231.1.1/24", "dev", lanRouter],
            rt + ["link", "set", lanRouter, "up"],
            lan + ["link", "set", "lo", "up"],
            lan + ["addr", "add", "\(nodeAddress)/24", "dev", lanNode],
            lan + ["link", "set", lanNode, "up"],
            lan + ["route", "add", "default", "via", "10.231.1.1"],
            ["netns", "exec", routerNamespace, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ] {
            try Self.run(arguments)
        }
        // Masquerade the LAN behind the router's outside address; drop connections that start outside.
        let rules = """
            table ip nat {
              chain post {
                type nat hook postrouting priority 100; policy accept;
                oifname "\(wanRouter)" masquerade
              }
            }
            table ip filter {
              chain forward {
                type filter hook forward priority 0; policy accept;
                iifname "\(wanRouter)" ct state new drop
              }
            }

            """
        try Self.run(["netns", "exec", routerNamespace, "nft", "-f", "-"], input: rules)
    }

    /// How this host would route a packet to `address` (`ip route get`).
    package func hostRoute(to address: String) throws -> String {
        try Self.run(["route", "get", address])
    }

    /// Deletes both namespaces; their veths go with them.
    package func remove() {
        _ = try? Self.run(["netns", "del", lanNamespace])
        _ = try? Self.run(["netns", "del", routerNamespace])
    }

    @discardableResult
    static func run(_ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = arguments
        let output = Pipe()
        let errors = Pipe()
        let stdin = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let failure = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NATUnavailable("ip \(arguments.joined(separator: " ")) failed: \(failure.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return text
    }
}

/// This machine cannot build the NAT test network; the message says why.
package struct NATUnavailable: Error, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}
