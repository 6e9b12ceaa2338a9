import AsyncHTTPClient
import Foundation
import HearthCore
import HearthNode
import HearthTesting
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Parts 1 and 2: a node's llama-server straight and through the gateway (time to first token, tokens per second,
/// latency), and the gateway's CPU per streamed token at the ceiling, over plain HTTP and over the link.
extension HearthBench {
    static func overhead(cluster: Cluster, http: HTTPClient, rounds: Int) async throws -> String {
        let node = try await cluster.startNode("bench-node", extraArguments: ["--parallel", "1"])
        try await cluster.waitForReadyNodes(1)
        guard let engine = childProcesses(of: node.pid, named: "llama-server").first,
            let port = commandLineValue(of: engine, flag: "--port")
        else { throw BenchError("cannot find the node's llama-server") }
        let body: JSONValue = [
            "model": .string(DefaultModel.id.rawValue),
            "messages": [["role": "user", "content": "Write a short story about a lighthouse keeper."]],
            "max_tokens": 64, "temperature": 0, "seed": 7, "ignore_eos": true, "stream": true, "stream_options": ["include_usage": true],
        ]
        let direct = "http://127.0.0.1:\(port)/v1/chat/completions"
        let gateway = cluster.url + "/v1/chat/completions"
        for _ in 0..<3 {
            _ = try await streamOnce(client: http, url: direct, body: body)
            _ = try await streamOnce(client: http, url: gateway, body: body)
        }
        var directSamples: [StreamSample] = []
        var gatewaySamples: [StreamSample] = []
        for _ in 0..<rounds {
            directSamples.append(try await streamOnce(client: http, url: direct, body: body))
            gatewaySamples.append(try await streamOnce(client: http, url: gateway, body: body))
        }
        func row(_ name: String, _ values: (StreamSample) -> Double, _ p: Double, scale: Double = 1000, unit: String = "ms") -> String {
            let d = percentile(directSamples.map(values), p) * scale
            let g = percentile(gatewaySamples.map(values), p) * scale
            return "| \(name) | \(format(d)) \(unit) | \(format(g)) \(unit) | \(format(d > 0 ? g / d : 0, 3)) |\n"
        }
        var text = """
            ## 1. Gateway overhead against llama-server directly

            SmolLM2-135M-Instruct Q4_1, one llama-server (1 thread, 1 slot) behind one node; \(rounds) rounds, each one
            request straight to llama-server and one through the gateway (gateway → link → node → llama-server), streamed,
            64 tokens (`ignore_eos`), temperature 0, after 3 warm-up rounds.

            | metric | direct | through gateway | ratio (gateway / direct) |
            | --- | --- | --- | --- |

            """
        text += row("time to first token p50", \.firstToken, 50)
        text += row("time to first token p99", \.firstToken, 99)
        text += row("total latency p50", \.total, 50)
        text += row("total latency p99", \.total, 99)
        text += row("streamed tokens/s p50", \.tokensPerSecond, 50, scale: 1, unit: "tok/s")
        let extra = percentile(gatewaySamples.map(\.firstToken), 50) - percentile(directSamples.map(\.firstToken), 50)
        text +=
            "\nAdded time to first token (p50): \(format(extra * 1000, 3)) ms, for the gateway and the node's link (TLS 1.3, HTTP/2) in between.\n\n"
        await node.stop()
        return text
    }

    /// Waits until the gateway lists `model` as ready.
    static func waitForModel(_ model: ModelID, at url: String) async throws {
        for _ in 0..<100 {
            let models = try await HTTP.get(url + "/v1/models").json
            if models["data"]?.arrayValue?.contains(where: { $0["id"]?.stringValue == model.rawValue }) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("the fake node did not join the gateway")
    }

    /// What one load run measured.
    struct Load {
        var requests: Int
        var errors: Int
        var elapsed: Double
        var latencies: [Double]
        var gatewayCPU: Double
        var nodeCPU: Double
        var tokens: Double { Double(requests * BenchServers.tokens) }
    }

    /// `clients` concurrent streaming clients for `duration` seconds against `url`; CPU of both processes.
    static func load(url: String, gateway: Int32, node: Int32, http: HTTPClient, clients: Int, duration: Double) async throws -> Load {
        let body: JSONValue = [
            "model": .string(BenchServers.model.rawValue), "messages": [["role": "user", "content": "go"]], "max_tokens": 64,
            "stream": true,
        ]
        let chat = url + "/v1/chat/completions"
        for _ in 0..<50 { _ = try await streamOnce(client: http, url: chat, body: body) }
        let gatewayBefore = cpuSeconds(of: gateway)
        let nodeBefore = cpuSeconds(of: node)
        let start = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: ([Double], Int).self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var latencies: [Double] = []
                    var errors = 0
                    while seconds(since: start) < duration {
                        do {
                            latencies.append(try await streamOnce(client: http, url: chat, body: body).total)
                        } catch {
                            errors += 1
                        }
                    }
                    return (latencies, errors)
                }
            }
            var all: ([Double], Int) = ([], 0)
            for try await (latencies, errors) in group {
                all.0 += latencies
                all.1 += errors
            }
            return all
        }
        return Load(
            requests: results.0.count,
            errors: results.1,
            elapsed: seconds(since: start),
            latencies: results.0,
            gatewayCPU: cpuSeconds(of: gateway) - gatewayBefore,
            nodeCPU: cpuSeconds(of: node) - nodeBefore
        )
    }

    /// This executable, to start its server modes as child processes.
    static var selfPath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func ceiling(http: HTTPClient, clients: Int, duration: Double) async throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("bench-ceiling")

        // The foundation's path: gateway → plain HTTP → node.
        let plainNode = try await TestProcess(
            name: "fake-node-plain",
            executable: selfPath,
            arguments: ["fake-node", "--listen"],
            directory: directory
        )
        let nodeURL = String(try await plainNode.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        let plainGateway = try await TestProcess(
            name: "plain-gateway",
            executable: selfPath,
            arguments: ["plain-gateway", "--node", nodeURL, "--data-dir", directory + "/plain"],
            directory: directory
        )
        let plainURL = String(try await plainGateway.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        let plain = try await load(url: plainURL, gateway: plainGateway.pid, node: plainNode.pid, http: http, clients: clients, duration: duration)
        _ = await plainGateway.stop()
        _ = await plainNode.stop()

        // The secure link: the real gateway binary, the same fake node dialing its mesh. The gateway routes only to
        // catalog models, so its catalog file pins the fake node's model.
        try FileManager.default.createDirectory(atPath: directory + "/link", withIntermediateDirectories: true)
        try BenchServers.catalog().encoded().write(to: URL(fileURLWithPath: directory + "/link/catalog.json"))
        let gateway = try await TestProcess(
            name: "gateway",
            executable: try TestEnvironment.hearthBinary(),
            arguments: [
                "gateway", "--port", "0", "--mesh-host", "127.0.0.1", "--mesh-port", "0", "--data-dir", directory + "/link",
                "--rate-limit", "100000000", "--anonymous-tokens-per-hour", "1000000000000", "--max-tokens-per-hour", "1000000000000",
                "--log-level", "warning",
            ],
            directory: directory
        )
        let url = String(try await gateway.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        let join = String(try await gateway.waitForLine { $0.hasPrefix("JOIN ") }.dropFirst("JOIN ".count))
        let linkNode = try await TestProcess(
            name: "fake-node-link",
            executable: selfPath,
            arguments: ["fake-node", "--join", join],
            directory: directory
        )
        try await waitForModel(BenchServers.model, at: url)
        let link = try await load(url: url, gateway: gateway.pid, node: linkNode.pid, http: http, clients: clients, duration: duration)
        _ = await linkNode.stop()
        _ = await gateway.stop()

        func row(_ name: String, _ value: (Load) -> Double, digits: Int = 2) -> String {
            let a = value(plain)
            let b = value(link)
            return "| \(name) | \(format(a, digits)) | \(format(b, digits)) | \(format(b - a, digits)) |\n"
        }
        var text = """
            ## 2. The secure link against plain HTTP: \(clients) concurrent streaming clients, fake node

            A fake node answers every request at once with \(BenchServers.tokens) token events, so the numbers show what
            the gateway and the node-side relay cost, not an engine. Run A reaches it over plain HTTP (the foundation's
            path, kept in the benchmark for this comparison); run B over the node's dial-out link (TLS 1.3, HTTP/2).
            Gateway, fake node and load generator are separate processes sharing the machine's cores; CPU is counted
            per process from /proc.

            | metric | A: plain HTTP | B: secure link | B − A |
            | --- | --- | --- | --- |

            """
        text += row("requests completed", { Double($0.requests) }, digits: 0)
        text += row("errors", { Double($0.errors) }, digits: 0)
        text += row("requests per second", { Double($0.requests) / $0.elapsed }, digits: 1)
        text += row("latency p50, whole stream (ms)", { percentile($0.latencies, 50) * 1000 })
        text += row("latency p99, whole stream (ms)", { percentile($0.latencies, 99) * 1000 })
        text += row("gateway CPU per streamed token (µs)", { $0.gatewayCPU / max($0.tokens, 1) * 1e6 })
        text += row("node-side CPU per streamed token (µs)", { $0.nodeCPU / max($0.tokens, 1) * 1e6 })
        text += row("gateway + node CPU per streamed token (µs)", { ($0.gatewayCPU + $0.nodeCPU) / max($0.tokens, 1) * 1e6 })
        text += row("gateway CPU per request (µs)", { $0.gatewayCPU / Double(max($0.requests, 1)) * 1e6 }, digits: 1)
        return text + "\n"
    }
}
