import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore

/// The owner's dashboard: loopback only, changes only with the control token.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct NodeDashboardTests {
    @Test func theNodeListensOnLoopbackOnlyAndPausingNeedsTheControlToken() async throws {
        try await Cluster.with(label: "dashboard") { cluster in
            let node = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            let dashboard = String(try await node.waitForLine { $0.hasPrefix("DASHBOARD url=") }.dropFirst("DASHBOARD url=".count))
            #expect(dashboard.hasPrefix("http://127.0.0.1:"))

            // Nothing the node or its engine listens on is reachable from the network.
            let nodeListens = listeningAddresses(of: node.pid)
            let engines = childProcesses(of: node.pid, named: "llama-server")
            let engineListens = engines.flatMap { listeningAddresses(of: $0) }
            #expect(nodeListens == ["127.0.0.1:\(dashboard.split(separator: ":").last!)"], "node listens on \(nodeListens)")
            #expect(engines.count == 1 && !engineListens.isEmpty, "engines \(engines) listen on \(engineListens)")
            #expect(engineListens.allSatisfy { $0.hasPrefix("127.0.0.1:") }, "\(engineListens)")

            let status = try await HTTP.get(dashboard + "/api/status")
            #expect(status.json["linked"] == true)
            #expect(status.json["models"]?[0]?["state"]?.stringValue == "ready")
            #expect(try await HTTP.get(dashboard + "/").text.contains("<title>Hearth · This node</title>"))
            // A name a web page could rebind to 127.0.0.1 is not answered (DNS rebinding).
            let rebound = try await HTTP.get(dashboard + "/api/status", headers: [("host", "evil.example:80")])
            #expect(rebound.status == 403)
            #expect(rebound.json["error"]?["code"]?.stringValue == "host_not_allowed")

            let tokenPath = cluster.directory + "/node-a/control.token"
            let mode = (try FileManager.default.attributesOfItem(atPath: tokenPath)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600)
            let token = try String(contentsOfFile: tokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

            for headers in [[], [("authorization", "Bearer hc_wrong")], [("authorization", token)]] {
                let refused = try await HTTP.post(dashboard + "/api/pause", json: [:], headers: headers)
                #expect(refused.status == 401)
                #expect(refused.json["error"]?["code"]?.stringValue == "control_token_required")
            }
            #expect(try await cluster.readyNodeCount() == 1)

            // The dashboard's own page gets the token from its server (browsers mark it same-origin); a page of
            // another site does not.
            let session = try await HTTP.get(dashboard + "/api/session", headers: [("sec-fetch-site", "same-origin")])
            #expect(session.json["token"]?.stringValue == token)
            let crossSite = try await HTTP.get(dashboard + "/api/session", headers: [("sec-fetch-site", "cross-site")])
            #expect(crossSite.status == 403)
            #expect(crossSite.json["token"] == nil)

            // A served request shows up in the receipts the node signed this hour.
            let answered = try await HTTP.post(
                cluster.url + "/v1/chat/completions",
                json: ["model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "hi"]], "max_tokens": 4]
            )
            #expect(answered.status == 200)
            let hours = try await HTTP.get(dashboard + "/api/status").json["receipts"]?.arrayValue ?? []
            #expect(hours.count == 24)
            #expect(hours.reduce(0) { $0 + ($1["receipts"]?.integerValue ?? 0) } == 1, "\(hours.suffix(2))")
            #expect(hours.reduce(0) { $0 + ($1["tokens"]?.integerValue ?? 0) } > 4)

            // With the token: the gateway stops routing to the node, then routes again.
            #expect(try await HTTP.post(dashboard + "/api/pause", json: [:], headers: [("authorization", "Bearer \(token)")]).status == 204)
            try await cluster.waitForReadyNodes(0, timeout: .seconds(10))
            let refusedChat = try await HTTP.post(
                cluster.url + "/v1/chat/completions",
                json: ["model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "hi"]], "max_tokens": 4]
            )
            #expect(refusedChat.status == 503)
            #expect(try await HTTP.post(dashboard + "/api/resume", json: [:], headers: [("authorization", "Bearer \(token)")]).status == 204)
            try await cluster.waitForReadyNodes(1, timeout: .seconds(10))
        }
    }
}
