import Foundation
import HearthCore
import HearthTesting
import NIOHTTP1
import Testing

/// Real pools: three `hearth node --pool-only` processes, each lending too little memory for SmolLM2 at 8 Ki tokens,
/// serve it together through llama.cpp's RPC backend, relayed by the gateway.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct PoolTests {
    /// 150 MiB each: the planner finds that two cannot hold the model at 8 Ki tokens (about 330 MiB) and three can.
    static func poolNodeArguments(_ name: String, cluster: Cluster) throws -> [String] {
        var arguments = try Cluster.nodeArguments(name: name, directory: cluster.directory, join: cluster.join)
        if let index = arguments.firstIndex(of: "--model") { arguments.removeSubrange(index...(index + 1)) }
        return arguments + ["--pool-only", "--pool-memory", "150MiB", "--memory", "200MiB"]
    }

    static let question: JSONValue = [
        "model": .string(DefaultModel.id.rawValue),
        "messages": [["role": "user", "content": "Tell me about the sea."]],
        "max_tokens": 48, "temperature": 0, "seed": 1, "cache_prompt": false,
    ]

    /// Asks until the pool answers, checking that every refusal meanwhile is the warming 503 with Retry-After.
    static func askUntilServed(_ cluster: Cluster, timeout: Duration = .seconds(240)) async throws -> (reply: HTTP.Reply, warming: [String]) {
        let deadline = ContinuousClock.now + timeout
        var warming: [String] = []
        while ContinuousClock.now < deadline {
            let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: question)
            if reply.status == 200 { return (reply, warming) }
            #expect(reply.status == 503, "unexpected answer \(reply.status): \(reply.text)")
            #expect(reply.headers.first(name: "retry-after") != nil)
            #expect(reply.json["error"]?["code"]?.stringValue == "pool_warming", "\(reply.text)")
            warming.append(reply.json["error"]?["message"]?.stringValue ?? "")
            try await Task.sleep(for: .milliseconds(500))
        }
        let pools = try await HTTP.get(cluster.url + "/api/pools").text
        throw TestProcessError("the pool did not serve in time; pools: \(pools)\ngateway:\n\(cluster.gateway.errorOutput.suffix(4000))")
    }

    /// Waits until the gateway has the reports of `count` nodes lending memory.
    static func waitForLenders(_ count: Int, cluster: Cluster) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let nodes = try await HTTP.get(cluster.url + "/api/nodes").json.arrayValue ?? []
            if nodes.filter({ $0["pool"]?["memoryBytes"] != nil }).count >= count { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestProcessError("the gateway did not see \(count) nodes lending memory; gateway:\n\(cluster.gateway.errorOutput.suffix(3000))")
    }

    @Test func threeNodesServeAModelNoneCanHoldAloneWithTheSameTextAsOneUnsplitEngine() async throws {
        try await Cluster.with(label: "pool", gatewayArguments: ["--auto-pools", "on", "--pool-context", "8192"]) { cluster in
            var nodes: [TestProcess] = []
            for name in ["pool-a", "pool-b", "pool-c"] {
                let arguments = try Self.poolNodeArguments(name, cluster: cluster)
                nodes.append(
                    try await TestProcess(name: name, executable: try TestEnvironment.hearthBinary(), arguments: arguments, directory: cluster.directory)
                )
            }
            for node in nodes { _ = try await node.waitForLine { $0.hasPrefix("READY node=") } }
            try await Self.waitForLenders(3, cluster: cluster)
            // Until all three lend memory, the gateway cannot plan; after that the pool warms and then serves.
            let (reply, warming) = try await Self.askUntilServed(cluster)
            #expect(!warming.isEmpty, "the first request should have found the pool warming")
            #expect(warming.allSatisfy { $0.contains("warming") })
            let pooled = reply.json["choices"]?[0]?["message"]?["content"]?.stringValue ?? ""
            #expect(!pooled.isEmpty)

            let pools = try await HTTP.get(cluster.url + "/api/pools").json
            let pool = try #require(pools["pools"]?[0])
            #expect(pool["state"]?.stringValue == "ready")
            #expect(pool["members"]?.arrayValue?.count == 3)
            let layers = pool["members"]?.arrayValue?.compactMap { $0["layers"]?.integerValue }.reduce(0, +)
            #expect(layers == 30)
            // Every node runs its part: one head, two rpc-servers, each bound to loopback only.
            let rpcServers = nodes.flatMap { childProcesses(of: $0.pid, named: "ggml-rpc-server") }
            #expect(rpcServers.count == 2)
            for pid in rpcServers { #expect(listeningAddresses(of: pid).allSatisfy { $0.hasPrefix("127.0.0.1:") }) }

            // The same request on one unsplit engine with the head's settings gives the same text.
            let port = Int.random(in: 20_000..<40_000)
            let reference = try await TestProcess(
                name: "reference",
                executable: try TestEnvironment.llamaServer(),
                arguments: [
                    "--model", try TestEnvironment.defaultModel(), "--host", "127.0.0.1", "--port", String(port), "--ctx-size", "8192",
                    "--parallel", "1", "--threads", "1", "--alias", DefaultModel.id.rawValue, "--no-webui",
                ],
                directory: cluster.directory
            )
            defer { Task { _ = await reference.stop() } }
            let deadline = ContinuousClock.now + .seconds(60)
            while ContinuousClock.now < deadline, (try? await HTTP.get("http://127.0.0.1:\(port)/health"))?.status != 200 {
                try await Task.sleep(for: .milliseconds(200))
            }
            let alone = try await HTTP.post("http://127.0.0.1:\(port)/v1/chat/completions", json: Self.question)
            #expect(alone.json["choices"]?[0]?["message"]?["content"]?.stringValue == pooled)
            _ = await reference.stop()
            for node in nodes { _ = await node.stop() }
        }
    }
}
