import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// Links whose far end stops answering without closing (a frozen process, a dead router): both sides notice from
/// the missing polls, drop the link, and the node dials again once the far end is back.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LinkLivenessTests {
    func waitFor(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for: \(what)")
    }

    @Test func aNodeDropsASilentGatewayAndLinksAgainWhenItIsBack() async throws {
        try await Cluster.with(label: "silent-gateway") { cluster in
            let node = try await cluster.startNode("node-a", extraArguments: ["--link-timeout", "2s"])
            try await cluster.waitForReadyNodes(1)
            // An idle link whose polls are held longer (5 s) than the node's timeout is not silent: it stays up.
            try await Task.sleep(for: .seconds(6))
            #expect(!node.errorOutput.contains("gateway stopped polling"), "the node dropped a healthy link")
            #expect(cluster.gateway.errorOutput.components(separatedBy: "node linked").count == 2)
            cluster.gateway.send(SIGSTOP)
            try await waitFor("the node to notice the silent gateway") { node.errorOutput.contains("gateway stopped polling") }
            cluster.gateway.send(SIGCONT)
            try await waitFor("a second link") { cluster.gateway.errorOutput.components(separatedBy: "node linked").count == 3 }
            try await cluster.waitForReadyNodes(1)
        }
    }

    @Test func aGatewayDropsASilentNodeAndTakesItBackWhenItIsBack() async throws {
        try await Cluster.with(label: "silent-node", gatewayArguments: ["--node-ttl", "2s"]) { cluster in
            let node = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            node.send(SIGSTOP)
            // Out of routing by the TTL (2 s: the sweeper says so), before the unanswered poll closes the link (5 s
            // later). Checked as an order in the gateway's log, not against a clock: a 5 s bound on the first failed
            // once with the whole suite and a fuzzer sharing two cores.
            try await waitFor("the gateway to close the link") { cluster.gateway.errorOutput.contains("node link ended") }
            let log = cluster.gateway.errorOutput
            let left = log.range(of: "node left: no report within the TTL")
            let ended = log.range(of: "node link ended")
            #expect(left != nil, "the TTL did not take the silent node out of routing")
            if let left, let ended { #expect(left.lowerBound < ended.lowerBound, "the node left routing only when its link closed") }
            #expect(try await cluster.readyNodeCount() == 0)
            node.send(SIGCONT)
            try await waitFor("a second link") { cluster.gateway.errorOutput.components(separatedBy: "node linked").count == 3 }
            try await cluster.waitForReadyNodes(1, timeout: .seconds(30))
        }
    }
}
