import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore
@testable import HearthMesh

/// The whole economy with real processes: two nodes certified by one person's account serve several users; the
/// ledger holds one entry per request and verifies; standing and quotas move as the formula says.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ReciprocityFlowTests {
    /// Logs `key` in over HTTP and returns its bearer header.
    func login(_ url: String, _ key: IdentityKey) async throws -> [(String, String)] {
        let publicKey = JSONValue.string(key.publicKey.base64EncodedString())
        let nonce = try #require(try await HTTP.post(url + "/api/auth/challenge", json: ["public_key": publicKey]).json["nonce"]?.stringValue)
        let signature = try key.sign(LoginProtocol.message(nonce: nonce)).base64EncodedString()
        let verified = try await HTTP.post(
            url + "/api/auth/verify",
            json: ["public_key": publicKey, "nonce": .string(nonce), "signature": .string(signature)]
        )
        return [("authorization", "Bearer \(try #require(verified.json["token"]?.stringValue))")]
    }

    @Test func aContributorsNodesEarnItHeadroomThatAPureConsumerLacks() async throws {
        try await Cluster.with(label: "economy") { cluster in
            let owner = IdentityKey.generate()
            let user = IdentityKey.generate()
            for name in ["node-a", "node-b"] {
                let directory = "\(cluster.directory)/\(name)"
                let device = try KeyFile.loadOrCreate(directory + "/node.key")
                let certificate = try DeviceCertificate.issue(account: owner, deviceKey: device.publicKey, deviceName: name, validFor: 86400)
                try (certificate.token + "\n").write(toFile: directory + "/device.cert", atomically: true, encoding: .utf8)
                _ = try await cluster.startNode(name)
            }
            try await cluster.waitForReadyNodes(2)
            let ownerAuth = try await login(cluster.url, owner)
            let userAuth = try await login(cluster.url, user)

            let chat: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Name a colour."]], "max_tokens": 8,
            ]
            var requests: [(headers: [(String, String)], id: String)] = []
            for headers in [ownerAuth, ownerAuth, userAuth, userAuth, userAuth, []] {
                let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat, headers: headers)
                #expect(reply.status == 200)
                requests.append((headers, reply.headers.first(name: "x-request-id") ?? ""))
            }
            var entries: [JSONValue] = []
            for _ in 0..<50 where entries.count < requests.count {
                try await Task.sleep(for: .milliseconds(100))
                entries = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue ?? []
            }
            #expect(entries.count == requests.count)
            #expect(Set(entries.compactMap { $0["request_id"]?.stringValue }) == Set(requests.map(\.id)))
            #expect(Set(entries.compactMap { $0["node"]?.stringValue }).count == 2, "both nodes served")
            #expect(entries.allSatisfy { $0["account"]?.stringValue == owner.nodeID.rawValue })
            func tokens(_ entry: JSONValue) -> Int64 { (entry["prompt_tokens"]?.integerValue ?? 0) + (entry["completion_tokens"]?.integerValue ?? 0) }
            let served = entries.map(tokens).reduce(0, +)
            let ownerUsed = entries.filter { $0["consumer"]?.stringValue == "user:\(owner.nodeID.rawValue)" }.map(tokens).reduce(0, +)
            let userUsed = entries.filter { $0["consumer"]?.stringValue == "user:\(user.nodeID.rawValue)" }.map(tokens).reduce(0, +)

            let export = cluster.directory + "/economy.jsonl"
            #expect(try await TestProcess.hearth(["ledger", "export", "--url", cluster.url, "--out", export], in: cluster.directory).status == 0)
            #expect(try await TestProcess.hearth(["ledger", "verify", export], in: cluster.directory).status == 0)

            // Standing = decayed contribution − consumption (seconds of decay are far below one token here).
            let ownerStanding = try await HTTP.get(cluster.url + "/api/reciprocity/standing", headers: ownerAuth).json
            let userStanding = try await HTTP.get(cluster.url + "/api/reciprocity/standing", headers: userAuth).json
            #expect(ownerStanding["contributed_tokens"]?.integerValue == served)
            #expect(ownerStanding["consumed_tokens"]?.integerValue == ownerUsed)
            #expect(ownerStanding["standing"]?.integerValue == served - ownerUsed)
            #expect(userStanding["contributed_tokens"]?.integerValue == 0)
            #expect(userStanding["consumed_tokens"]?.integerValue == userUsed)
            #expect(userStanding["quota_tokens_per_hour"]?.integerValue == 20_000)
            #expect(ownerStanding["quota_tokens_per_hour"]?.integerValue == 20_000 + served - ownerUsed)

            let cli = try await TestProcess.hearth(["standing", "--url", cluster.url], in: cluster.directory)
            #expect(cli.output.contains("identity=anonymous"))
            #expect(cli.output.contains("quota_tokens_per_hour=20000"))
        }
    }
}
