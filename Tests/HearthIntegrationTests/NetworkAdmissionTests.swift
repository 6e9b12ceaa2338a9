import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// Private networks, invites and device certificates with the real `hearth` binary.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct NetworkAdmissionTests {
    /// The nodes the gateway lists now.
    func listedNodes(_ cluster: Cluster) async throws -> [JSONValue] {
        try await HTTP.get(cluster.url + "/api/nodes").json.arrayValue ?? []
    }

    func waitUntilListed(_ cluster: Cluster, count: Int) async throws {
        for _ in 0..<100 {
            if try await listedNodes(cluster).count == count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("the gateway did not list \(count) nodes; it lists \(try await listedNodes(cluster).count)")
    }

    /// Waits for a node the gateway refuses: it exits with an error that names `reason`.
    func expectRefused(_ node: TestProcess, reason: String) async {
        let status = await node.waitForExit(timeout: .seconds(20))
        #expect(status != 0)
        #expect(node.errorOutput.contains(reason), "\(node.errorOutput.suffix(600))")
    }

    @Test func aPrivateNetworkAdmitsOnlyWithAnInviteItCountsItself() async throws {
        try await Cluster.with(label: "private", gatewayArguments: ["--network", "private"]) { cluster in
            let gatewayDirectory = cluster.directory + "/gateway"
            await expectRefused(try await cluster.startNode("no-invite"), reason: "invite_required")

            let created = try await TestProcess.hearth(
                ["invite", "create", "--data-dir", gatewayDirectory, "--max-uses", "1"],
                in: cluster.directory
            )
            #expect(created.status == 0, "\(created.errors)")
            let token = try #require(created.output.first { $0.hasPrefix("token=") }?.dropFirst("token=".count))

            let invited = try await cluster.startNode("invited", extraArguments: ["--invite", String(token)])
            try await waitUntilListed(cluster, count: 1)
            await expectRefused(try await cluster.startNode("second", extraArguments: ["--invite", String(token)]), reason: "invite_used_up")

            // A member needs no invite to come back.
            _ = await invited.stop()
            try await waitUntilListed(cluster, count: 0)
            _ = try await cluster.startNode("invited")
            try await waitUntilListed(cluster, count: 1)

            let short = try await TestProcess.hearth(["invite", "create", "--data-dir", gatewayDirectory, "--expires", "1s"], in: cluster.directory)
            let expiring = try #require(short.output.first { $0.hasPrefix("token=") }?.dropFirst("token=".count))
            // Wait until the gateway's own store calls it expired, rather than for a guessed time.
            var expired = false
            for _ in 0..<100 where !expired {
                let listed = try await TestProcess.hearth(["invite", "list", "--data-dir", gatewayDirectory], in: cluster.directory)
                expired = listed.output.contains { $0.contains("uses=0/1") && $0.contains("expired") }
                if !expired { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(expired, "the one-second invite was never listed as expired")
            await expectRefused(try await cluster.startNode("late", extraArguments: ["--invite", String(expiring)]), reason: "invite_expired")

            let listed = try await TestProcess.hearth(["invite", "list", "--data-dir", gatewayDirectory], in: cluster.directory)
            #expect(listed.output.contains { $0.contains("uses=1/1") && $0.contains("live") })
            #expect(listed.output.contains { $0.contains("uses=0/1") && $0.contains("expired") })
        }
    }

    @Test func deviceCertificatesTieNodesToAnAccountAndRevocationShutsOneOut() async throws {
        try await Cluster.with(label: "devices", gatewayArguments: ["--require-device-certificate"]) { cluster in
            let accountFile = cluster.directory + "/account.key"
            #expect(try await TestProcess.hearth(["keys", "new", "--file", accountFile], in: cluster.directory).status == 0)
            let accountID = try #require(
                try await TestProcess.hearth(["keys", "show", "--file", accountFile], in: cluster.directory).output
                    .first { $0.hasPrefix("node-id=") }?.dropFirst("node-id=".count)
            )
            // Certify a node whose key exists before it first starts.
            let nodeDirectory = cluster.directory + "/certified"
            #expect(try await TestProcess.hearth(["keys", "new", "--file", nodeDirectory + "/node.key"], in: cluster.directory).status == 0)
            let certified = try await TestProcess.hearth(
                ["keys", "certify-device", "--account", accountFile, "--node-dir", nodeDirectory, "--name", "lab-pc", "--days", "30"],
                in: cluster.directory
            )
            #expect(certified.status == 0, "\(certified.errors)")
            let deviceID = try #require(certified.output.first { $0.hasPrefix("device=") }?.dropFirst("device=".count))

            await expectRefused(try await cluster.startNode("uncertified"), reason: "device_certificate_required")
            let node = try await cluster.startNode("certified")
            try await waitUntilListed(cluster, count: 1)
            let listed = try await listedNodes(cluster)
            #expect(listed.first?["nodeID"]?.stringValue == String(deviceID))
            #expect(listed.first?["account"]?.stringValue == String(accountID))

            let devices = try await TestProcess.hearth(["devices", "list", "--url", cluster.url, "--key", accountFile], in: cluster.directory)
            #expect(devices.output.contains { $0.hasPrefix(String(deviceID)) && $0.contains("online") }, "\(devices.output) \(devices.errors)")

            // Someone else's account cannot revoke it.
            let stranger = cluster.directory + "/stranger.key"
            _ = try await TestProcess.hearth(["keys", "new", "--file", stranger], in: cluster.directory)
            let refused = try await TestProcess.hearth(
                ["devices", "revoke", "--url", cluster.url, "--key", stranger, String(deviceID)],
                in: cluster.directory
            )
            #expect(refused.status != 0)
            #expect(node.isRunning)

            let revoked = try await TestProcess.hearth(
                ["devices", "revoke", "--url", cluster.url, "--key", accountFile, String(deviceID)],
                in: cluster.directory
            )
            #expect(revoked.status == 0, "\(revoked.errors)")
            // The link closes at once; the node dials again and its certificate is refused for good.
            await expectRefused(node, reason: "device_revoked")
            #expect(try await listedNodes(cluster).isEmpty)
        }
    }
}
