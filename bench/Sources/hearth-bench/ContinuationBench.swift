import AsyncHTTPClient
import Foundation
import HearthCore
import HearthTesting
import NIOCore
import NIOHTTP1

/// `--parts continuation`: what a node's death costs a client whose stream it was serving, and what spot checks cost.
///
/// Three nodes serve SmolLM2 (one thread each, no sandbox, so that a killed node can start again at once). Each round
/// streams 200 tokens and SIGKILLs the serving node after 40: the gap the client sees is the time from the last event
/// before the kill to the first event after it, against the stream's own median time between events (its reference,
/// measured in the same stream). Then the cost of a spot check against the answer it checks, on the same nodes.
enum ContinuationBench {
    static func run(rounds: Int) async throws -> String {
        try await Cluster.with(label: "continuation-bench") { cluster in
            var nodes: [String: TestProcess] = [:]
            let arguments = ["--no-sandbox", "--parallel", "1"]
            for name in ["node-a", "node-b", "node-c"] { nodes[name] = try await cluster.startNode(name, extraArguments: arguments) }
            try await cluster.waitForReadyNodes(3)
            var gaps: [Double] = []
            var intervals: [Double] = []
            var generated: [Int] = []
            for round in 0..<rounds {
                let names = try await cluster.nodeNames()
                let (gap, interval, tokens, victim) = try await killMidStream(cluster, seed: round, names: names, nodes: nodes)
                gaps.append(gap)
                intervals.append(interval)
                generated.append(tokens)
                // The killed node comes back for the next round.
                nodes[victim] = try await cluster.startNode(victim, extraArguments: arguments)
                try await cluster.waitForReadyNodes(3)
            }
            let check = try await spotCheckCost(cluster)
            let marking = try await markingCost(nodes.values.first!)
            var report = "## Continuation after a node's death (\(rounds) rounds, 200-token streams, SIGKILL after 40)\n\n"
            report += "| measure | p50 | p99 |\n| --- | --- | --- |\n"
            report += "| gap the client sees at the kill (ms) | \(ms(percentile(gaps, 50))) | \(ms(percentile(gaps, 99))) |\n"
            report += "| the same streams' time between events (ms) | \(ms(percentile(intervals, 50))) | \(ms(percentile(intervals, 99))) |\n"
            report += "| gap / time between events | \(ratio(percentile(gaps, 50), percentile(intervals, 50))) | "
            report += "\(ratio(percentile(gaps, 99), percentile(intervals, 50))) |\n\n"
            report += "Every stream ended whole: \(generated.allSatisfy { $0 == 200 } ? "yes" : "no (\(generated))"). The gap is the "
            report += "gateway noticing the closed link, opening the next part on another node, that node templating and "
            report += "prefilling the prompt and the answer so far, and its first token.\n\n"
            let memory = Generation.stateBytes(tokens: 300)
            report += "State kept per stream: 4 bytes per generated token id, plus the text of gap events: \(memory) bytes for a "
            report += "300-token answer without gaps (`Generation.size`).\n\n"
            report += "## Marking tokens\n\nA node asks its engine for the sampled token's log-probability with every streamed "
            report += "event, to learn the token ids (docs/ROUTING.md). Decode rate of one node's engine, asked directly, "
            report += "96 tokens, median of 5 interleaved rounds:\n\n| request | tokens/s |\n| --- | --- |\n"
            report += "| plain | \(String(format: "%.1f", marking.plain)) |\n"
            report += "| with `logprobs`, `top_logprobs: 1` | \(String(format: "%.1f", marking.marked)) |\n"
            report += "| ratio | \(String(format: "%.2f", marking.marked / marking.plain)) |\n\n"
            report += "## Spot checks\n\n| measure | value |\n| --- | --- |\n"
            report += "| answer, 128 tokens (ms, median of 5) | \(ms(check.answer)) |\n"
            report += "| check of its 128 tokens on another node (ms, median of 5) | \(ms(check.check)) |\n"
            report += "| check / answer | \(ratio(check.check, check.answer)) |\n"
            report += "| added work at the default share (3 %), once every node's first 3 are past | "
            report += "\(String(format: "%.1f", 3 * check.check / check.answer)) % |\n\n"
            return report
        }
    }

    static func ms(_ seconds: Double) -> String { String(format: "%.0f", seconds * 1000) }
    static func ratio(_ a: Double, _ b: Double) -> String { b > 0 ? String(format: "%.1f", a / b) : "–" }

    /// One stream, its node killed after 40 tokens: the gap at the kill, the median time between events before it,
    /// the tokens the client got, and the killed node's name.
    static func killMidStream(
        _ cluster: Cluster,
        seed: Int,
        names: [String: String],
        nodes: [String: TestProcess]
    ) async throws -> (Double, Double, Int, String) {
        let body: JSONValue = [
            "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Write a story about a fox."]],
            "max_tokens": 200, "temperature": 0.7, "seed": .integer(Int64(seed)), "ignore_eos": true, "stream": true,
        ]
        var request = HTTPClientRequest(url: cluster.url + "/v1/chat/completions")
        request.method = .POST
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(300))
        guard let served = response.headers.first(name: "x-hearth-node"), let name = names[served], let victim = nodes[name] else {
            throw BenchError("cannot tell which node serves the stream")
        }
        var pending = ""
        var times: [ContinuousClock.Instant] = []
        var killedAt: Int?
        for try await chunk in response.body {
            pending += String(buffer: chunk)
            while let end = pending.range(of: "\n\n") {
                let event = pending[..<end.lowerBound]
                pending = String(pending[end.upperBound...])
                guard event.contains("\"content\":\"") else { continue }
                times.append(.now)
                if times.count == 40 && killedAt == nil {
                    victim.send(SIGKILL)
                    killedAt = times.count
                }
            }
        }
        _ = await victim.waitForExit()
        guard let killedAt, times.count > killedAt else { throw BenchError("the stream ended at the kill (\(times.count) tokens)") }
        let before = zip(times.dropFirst(), times).prefix(killedAt - 1).map { ($0 - $1).seconds }
        return ((times[killedAt] - times[killedAt - 1]).seconds, percentile(before, 50), times.count, name)
    }

    /// The engine's decode rate with and without the log-probability a node asks for, medians of 5 interleaved rounds.
    static func markingCost(_ node: TestProcess) async throws -> (plain: Double, marked: Double) {
        guard let engine = childProcesses(of: node.pid, named: "llama-server").first, let port = commandLineValue(of: engine, flag: "--port") else {
            throw BenchError("cannot find the node's engine")
        }
        let url = "http://127.0.0.1:\(port)/v1/chat/completions"
        let plain: JSONValue = [
            "messages": [["role": "user", "content": "Write a story about a fox."]], "max_tokens": 96, "temperature": 0, "ignore_eos": true,
        ]
        var marked = plain
        marked["logprobs"] = true
        marked["top_logprobs"] = 1
        var rates: (plain: [Double], marked: [Double]) = ([], [])
        for _ in 0..<5 {
            rates.plain.append(try await HTTP.post(url, json: plain).json["timings"]?["predicted_per_second"]?.doubleValue ?? 0)
            rates.marked.append(try await HTTP.post(url, json: marked).json["timings"]?["predicted_per_second"]?.doubleValue ?? 0)
        }
        return (percentile(rates.plain, 50), percentile(rates.marked, 50))
    }

    /// The time of a 128-token answer, and of checking it as the gateway does (grammar-forced, top 40), medians of 5.
    static func spotCheckCost(_ cluster: Cluster) async throws -> (answer: Double, check: Double) {
        var answers: [Double] = []
        var checks: [Double] = []
        for seed in 0..<5 {
            let body: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Tell me about rivers."]],
                "max_tokens": 128, "temperature": 0.7, "seed": .integer(Int64(seed)), "ignore_eos": true, "logprobs": true, "top_logprobs": 1,
            ]
            var started = ContinuousClock.now
            let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: body)
            answers.append((ContinuousClock.now - started).seconds)
            let claimed = (reply.json["choices"]?[0]?["logprobs"]?["content"]?.arrayValue ?? []).compactMap { $0["id"]?.integerValue }
            let check = SpotCheck.request(for: body, claimed: claimed.map { Int32($0) }, chat: true)
            started = .now
            let checked = try await HTTP.post(cluster.url + "/v1/chat/completions", json: check)
            guard checked.status == 200 else { throw BenchError("the check failed: \(checked.text.prefix(300))") }
            checks.append((ContinuousClock.now - started).seconds)
        }
        return (percentile(answers, 50), percentile(checks, 50))
    }
}

extension Generation {
    /// The bytes a generation of `tokens` clean tokens keeps.
    static func stateBytes(tokens: Int) -> Int {
        var generation = Generation()
        for token in 0..<tokens { generation.observe(TokenMark(token: Int32(token), kind: .clean)) { nil } }
        return generation.size
    }
}
