import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore

extension OneAtATime {
    /// Four real nodes under sixteen concurrent clients; a node serving streams is frozen and thawed (SIGSTOP and
    /// SIGCONT) again and again, another one serving is SIGKILLed. No client may see an error: every stream ends whole.
    @Suite(.serialized, .timeLimit(.minutes(6)))
    struct ChaosTests {
        struct Figures {
            var streams = 0
            var whole = 0
            var failures: [String] = []
        }

        static let clients = 16
        /// The clients' HTTP client: AsyncHTTPClient's shared one opens at most 8 connections to a host, which made the
        /// sixteen clients eight, all on the router's two best nodes, and a node chosen by name often had no stream to cut.
        static let client: HTTPClient = {
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
            return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        }()
        static let traffic: Duration = .seconds(45)

        @Test func noClientSeesAnErrorWhileNodesDieAndFreeze() async throws {
            // Sixteen clients from one address: the per-address limits a public gateway needs would hold them back.
            let limits = ["--rate-limit", "100000", "--anonymous-tokens-per-hour", "1000000000", "--max-tokens-per-hour", "1000000000"]
            try await Cluster.with(label: "chaos", gatewayArguments: ["--node-ttl", "2s", "--max-continuations", "4"] + limits) { cluster in
                var nodes: [TestProcess] = []
                for name in ["node-a", "node-b", "node-c", "node-d"] {
                    nodes.append(try await cluster.startNode(name, extraArguments: ["--parallel", "4"]))
                }
                try await cluster.waitForReadyNodes(4)

                let deadline = ContinuousClock.now + Self.traffic
                let url = cluster.url
                let result = try await withThrowingTaskGroup(of: Figures.self) { group in
                    for client in 0..<Self.clients {
                        group.addTask {
                            var figures = Figures()
                            while ContinuousClock.now < deadline {
                                figures.streams += 1
                                if let failure = try await Self.stream(url, seed: client * 1000 + figures.streams) {
                                    figures.failures.append(failure)
                                } else {
                                    figures.whole += 1
                                }
                            }
                            return figures
                        }
                    }
                    group.addTask { [nodes] in
                        // Each victim is a node that is serving when it is chosen: the router leaves idle nodes alone,
                        // so a node picked by name may have no stream to cut (the streams last a second or two).
                        try await Task.sleep(for: .seconds(3))
                        let flaky = try await Self.servingNode(among: nodes, at: url, excluding: [])
                        // Frozen 8 s out of every 12: long enough for the gateway to stop routing to it (the TTL is 2 s)
                        // and to close its link (an unanswered poll), cutting its streams; then it links again.
                        flaky.send(SIGSTOP)
                        try await Task.sleep(for: .seconds(3))
                        try await Self.servingNode(among: nodes, at: url, excluding: [flaky.name]).send(SIGKILL)
                        try await Task.sleep(for: .seconds(5))
                        flaky.send(SIGCONT)
                        try await Task.sleep(for: .seconds(4))
                        while ContinuousClock.now < deadline - .seconds(10) {
                            flaky.send(SIGSTOP)
                            try await Task.sleep(for: .seconds(8))
                            flaky.send(SIGCONT)
                            try await Task.sleep(for: .seconds(4))
                        }
                        return Figures()
                    }
                    var total = Figures()
                    for try await figures in group {
                        total.streams += figures.streams
                        total.whole += figures.whole
                        total.failures += figures.failures
                    }
                    return total
                }
                let metrics = try await HTTP.get(cluster.url + "/metrics").text
                let continued = metrics.split(separator: "\n").first { $0.hasPrefix("hearth_stream_continuations_total ") } ?? "none"
                print("chaos: \(result.streams) streams, \(result.whole) whole, \(result.failures.count) failed; \(continued)")
                #expect(result.failures.isEmpty, "\(result.failures.prefix(5))")
                #expect(result.streams >= Self.clients)
                #expect(continued != "none", "no stream was cut: the chaos did not reach the streams")
            }
        }

        /// A node of `nodes` (none of `excluding`, by name) that the gateway has a request open on, once there is one.
        static func servingNode(among nodes: [TestProcess], at url: String, excluding: Set<String>) async throws -> TestProcess {
            try await eventually("a node to serve a request", within: .seconds(30), every: .milliseconds(100)) { () -> TestProcess? in
                let serving = (try await HTTP.get(url + "/api/nodes").json.arrayValue ?? []).filter {
                    ($0["routing"]?["inFlight"]?.integerValue ?? 0) > 0
                }
                return nodes.first { node in
                    !excluding.contains(node.name) && serving.contains { $0["name"]?.stringValue == node.name }
                }
            }
        }

        /// One streamed chat request read to its end; `nil` when it ended whole, else what went wrong.
        static func stream(_ url: String, seed: Int) async throws -> String? {
            let body: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Tell me about foxes."]],
                "max_tokens": 64, "temperature": 0.7, "seed": .integer(Int64(seed)), "stream": true, "ignore_eos": true,
                // The log-probabilities carry each token's id: a stream that repeated or lost a token at a seam would
                // not have exactly 64, as its usage says.
                "logprobs": true, "stream_options": ["include_usage": true],
            ]
            var request = HTTPClientRequest(url: url + "/v1/chat/completions")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            do {
                let response = try await Self.client.execute(request, timeout: .seconds(120))
                let text = String(buffer: try await response.body.collect(upTo: 8 << 20))
                guard response.status == .ok else { return "HTTP \(response.status.code): \(text.prefix(200))" }
                let events = HTTP.events(text)
                if let error = events.first(where: { $0["error"] != nil }) { return "error event: \(error)" }
                guard text.hasSuffix("data: [DONE]\n\n") else { return "no [DONE]" }
                guard events.contains(where: { $0["choices"]?[0]?["finish_reason"]?.stringValue == "length" }) else {
                    return "no finish reason"
                }
                let ids = events.flatMap { $0["choices"]?[0]?["logprobs"]?["content"]?.arrayValue ?? [] }.filter { $0["id"] != nil }
                let usage = events.last?["usage"]?["completion_tokens"]?.integerValue
                guard ids.count == 64, usage == 64 else { return "\(ids.count) tokens streamed, usage says \(usage.map(String.init) ?? "nothing")" }
                return nil
            } catch {
                return "\(error)"
            }
        }
    }
}
