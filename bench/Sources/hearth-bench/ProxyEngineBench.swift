import AsyncHTTPClient
import Foundation
import HearthCore
import HearthTesting
import NIOCore

/// The `proxies` part with a real engine on the same 2 cores: llama-server behind nginx against `hearth up` running
/// the same engine with the same settings, the same paced client load; and `hearth up`'s CPU while nothing happens.
enum ProxyEngineBench {
    struct Outcome {
        var nginxTokensPerSecond = 0.0
        var hearthTokensPerSecond = 0.0
        var nginxCPUPerToken = 0.0
        var hearthCPUPerToken = 0.0
        var nginxErrors = 0
        var hearthErrors = 0
        /// `hearth up`'s own CPU seconds over `idleSeconds` with nothing to do (its engine's not counted).
        var idleCPU = 0.0
        var idleSeconds = 30.0
        var streams = 0
        var tokens = 0
    }

    static func run(http: HTTPClient, streams: Int, requests: Int, tokens: Int, idleSeconds: Double) async throws -> Outcome {
        var outcome = Outcome(idleSeconds: idleSeconds, streams: streams, tokens: tokens)
        let directory = try TestEnvironment.temporaryDirectory("bench-colocated")
        let slotContext = 512

        // llama-server behind nginx.
        let port = try TestEnvironment.freePort()
        let engine = try await TestProcess(
            name: "llama-server",
            executable: try TestEnvironment.llamaServer(),
            arguments: [
                "-m", try TestEnvironment.defaultModel(), "--host", "127.0.0.1", "--port", String(port), "-np", String(streams), "-t", "2",
                "-c", String(slotContext * streams), "--alias", MockUpstream.name,
            ],
            directory: directory
        )
        try await ProxyTargets.waitUntilAnswering("http://127.0.0.1:\(port)/health", process: engine, within: .seconds(120))
        try FileManager.default.createDirectory(atPath: directory + "/nginx", withIntermediateDirectories: true)
        guard let nginx = try await ProxyTargets.nginx(in: directory + "/nginx", upstream: "http://127.0.0.1:\(port)", connections: 256) else {
            throw BenchError("nginx is missing")
        }
        let behindNginx = try await load(http, nginx, streams: streams, requests: requests, tokens: tokens)
        await nginx.stop()
        _ = await engine.stop()
        outcome.nginxTokensPerSecond = Double(behindNginx.tokens) / behindNginx.elapsed
        outcome.nginxCPUPerToken = behindNginx.cpu / Double(max(1, behindNginx.tokens))
        outcome.nginxErrors = behindNginx.errors

        // `hearth up` with the same engine settings: gateway and node in one process, the engine its child.
        let up = try await TestProcess(
            name: "hearth-up",
            executable: try TestEnvironment.hearthBinary(),
            arguments: [
                "up", "--port", "0", "--data-dir", directory + "/up", "--parallel", String(streams), "--threads", "2",
                "--ctx-size", String(slotContext), "--pool-memory", "0", "--no-dashboard", "--log-level", "warning",
                "--rate-limit", "100000000", "--anonymous-tokens-per-hour", "1000000000000", "--max-tokens-per-hour", "1000000000000",
                "--max-connections-per-address", "100000",
            ],
            directory: directory
        )
        defer { Task { _ = await up.stop() } }
        let url = String(try await up.waitForLine(timeout: .seconds(300)) { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        let pid = up.pid
        let hearth = ProxyTarget(name: "hearth up", url: url, model: DefaultModel.id.rawValue, processes: { [pid] }, version: "", stop: {})
        try await HearthBench.waitForModel(DefaultModel.id, at: url)
        // Idle: after a few seconds to settle its start-up work, nothing but its own timers.
        try await Task.sleep(for: .seconds(5))
        let before = cpuSeconds(of: pid)
        try await Task.sleep(for: .seconds(idleSeconds))
        outcome.idleCPU = cpuSeconds(of: pid) - before
        let throughHearth = try await load(http, hearth, streams: streams, requests: requests, tokens: tokens)
        _ = await up.stop()
        outcome.hearthTokensPerSecond = Double(throughHearth.tokens) / throughHearth.elapsed
        outcome.hearthCPUPerToken = throughHearth.cpu / Double(max(1, throughHearth.tokens))
        outcome.hearthErrors = throughHearth.errors
        return outcome
    }

    /// `streams` clients, each `requests` streamed answers of exactly `tokens` tokens.
    static func load(_ http: HTTPClient, _ target: ProxyTarget, streams: Int, requests: Int, tokens: Int) async throws -> ProxyBench.Load {
        let body: JSONValue = [
            "model": .string(target.model), "messages": [["role": "user", "content": "Write a short story about a lighthouse keeper."]],
            "max_tokens": .integer(Int64(tokens)), "temperature": 0, "ignore_eos": true, "stream": true, "stream_options": ["include_usage": true],
        ]
        // One warm-up answer, so both engines have their weights paged in.
        _ = try await streamOnce(client: http, url: target.chat, body: body)
        return await ProxyBench.measure(target, clients: streams) { _ in
            var mine = ProxyBench.Load()
            for _ in 0..<requests {
                let outcome = await ProxyBench.attempt { try await streamOnce(client: http, url: target.chat, body: body).completionTokens }
                mine.tokens += mine.count(outcome) ?? 0
            }
            return mine
        }
    }
}
