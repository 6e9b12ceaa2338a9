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
        /// The first error of each column, to say what the errors were.
        var firstErrors: [String] = []
        /// `hearth up`'s own CPU seconds over `idleSeconds` with nothing to do (its engine's not counted).
        var idleCPU = 0.0
        var idleSeconds = 30.0
        var streams = 0
        var tokens = 0
        /// `hearth up`'s tokens/s over nginx's, round by round.
        var ratios: [Double] = []
    }

    static func run(http: HTTPClient, streams: Int, requests: Int, rounds: Int, tokens: Int, idleSeconds: Double) async throws -> Outcome {
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
        defer { Task { _ = await engine.stop() } }
        try await ProxyTargets.waitUntilAnswering("http://127.0.0.1:\(port)/health", process: engine, within: .seconds(120))
        try FileManager.default.createDirectory(atPath: directory + "/nginx", withIntermediateDirectories: true)
        guard let nginx = try await ProxyTargets.nginx(in: directory + "/nginx", upstream: "http://127.0.0.1:\(port)", connections: 256) else {
            throw BenchError("nginx is missing")
        }

        // `hearth up` with the same engine settings: gateway and node in one process, the engine its child. Both stay
        // up (an idle engine costs nothing) so that their loads can take turns.
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

        // The loads take turns, round by round, and each round's throughput is compared with its partner's: the
        // machine's drift over a run (measured: one proxy's tokens/s moved 155–179 between runs) falls on both.
        var totals: [String: ProxyBench.Load] = [:]
        let rounds = max(1, min(rounds, requests))
        let perRound = max(1, (requests + rounds - 1) / rounds)
        for round in 0..<rounds {
            // Which goes first alternates, so that neither always follows the other's load.
            var rates: [String: Double] = [:]
            for target in round.isMultiple(of: 2) ? [nginx, hearth] : [hearth, nginx] {
                let measured = try await load(http, target, streams: streams, requests: perRound, tokens: tokens)
                rates[target.name] = tokensPerSecond(measured)
                totals[target.name, default: ProxyBench.Load()].add(measured)
            }
            outcome.ratios.append((rates[hearth.name] ?? 0) / max(rates[nginx.name] ?? 0, 1e-9))
        }
        await nginx.stop()
        _ = await up.stop()
        _ = await engine.stop()
        let (behindNginx, throughHearth) = (totals[nginx.name] ?? ProxyBench.Load(), totals[hearth.name] ?? ProxyBench.Load())
        outcome.nginxTokensPerSecond = tokensPerSecond(behindNginx)
        outcome.nginxCPUPerToken = behindNginx.cpu / Double(max(1, behindNginx.tokens))
        outcome.nginxErrors = behindNginx.errors
        if let error = behindNginx.firstError { outcome.firstErrors.append("behind nginx: `\(error.prefix(200))`") }
        outcome.hearthTokensPerSecond = tokensPerSecond(throughHearth)
        outcome.hearthCPUPerToken = throughHearth.cpu / Double(max(1, throughHearth.tokens))
        outcome.hearthErrors = throughHearth.errors
        if let error = throughHearth.firstError { outcome.firstErrors.append("through `hearth up`: `\(error.prefix(200))`") }
        return outcome
    }

    static func tokensPerSecond(_ load: ProxyBench.Load) -> Double {
        Double(load.tokens) / max(load.elapsed, 1e-9)
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

extension ProxyBench.Load {
    /// Adds a load measured after this one: its requests, errors and tokens, and its CPU and time (which `merge`, for
    /// clients measured at once, leaves alone).
    mutating func add(_ later: ProxyBench.Load) {
        ProxyBench.merge(&self, later)
        cpu += later.cpu
        elapsed += later.elapsed
    }
}
