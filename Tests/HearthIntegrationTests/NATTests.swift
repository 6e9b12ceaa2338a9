import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore

/// A node behind a real NAT: it can dial the gateway, and nothing can dial it.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NATTests {
    @Test func aNodeBehindNATServesThroughItsDialOutLink() async throws {
        let network: NATNetwork
        do {
            network = try NATNetwork()
        } catch let unavailable as NATUnavailable {
            // Only where the kernel or the sandbox refuses namespaces; CI runs as root with iproute2 and nftables.
            print("SKIPPED aNodeBehindNATServesThroughItsDialOutLink: \(unavailable)")
            return
        }
        defer { network.remove() }
        try await Cluster.with(label: "nat", gatewayArguments: ["--mesh-host", network.hostAddress]) { cluster in
            #expect(cluster.join.hasPrefix("\(network.hostAddress):"))
            // `ip netns exec` mounts a fresh /sys without the cgroup hierarchies, so the sandbox cannot limit the engine
            // there and the node would (rightly) refuse to serve; this test is about the network path.
            let node = try await cluster.startNode("behind-nat", extraArguments: ["--no-sandbox"], launcher: network.launcher)
            try await cluster.waitForReadyNodes(1)

            let answer = try await HTTP.post(
                cluster.url + "/v1/chat/completions",
                json: [
                    "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Hello"]], "max_tokens": 8,
                ]
            )
            #expect(answer.status == 200)
            let content = answer.json["choices"]?[0]?["message"]?["content"]?.stringValue ?? ""
            #expect(!content.isEmpty, "\(answer.text)")
            let nodeID = try #require(node.output.first { $0.hasPrefix("READY node=") }?.dropFirst("READY node=".count))
            #expect(answer.headers.first(name: "x-hearth-node") == String(nodeID.prefix(12)))

            // The gateway saw the router's outside address, never the node's own.
            let log = cluster.gateway.errorOutput
            #expect(log.contains("mesh.remote=[IPv4]\(network.routerAddress)"))
            #expect(!log.contains(network.nodeAddress))
            // And it has no way into the node's network: its route there does not lead through the router. (A TCP
            // probe proves nothing here: a sandbox may answer any outbound connection itself.)
            let route = try network.hostRoute(to: network.nodeAddress)
            #expect(!route.contains(network.routerAddress), "\(route)")
        }
    }
}
