import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore

/// The real `hearth` binary with real llama-server engines serving SmolLM2.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct TwoNodeClusterTests {
    let chat: JSONValue = [
        "model": .string(DefaultModel.id.rawValue),
        "messages": [["role": "user", "content": "Name three colours."]],
        "max_tokens": 16, "temperature": 0, "seed": 1,
    ]

    @Test func servesStreamingChatNonStreamingChatOllamaAndModelsFromTwoNodes() async throws {
        try await Cluster.with(label: "two-nodes") { cluster in
            _ = try await cluster.startNode("node-a")
            _ = try await cluster.startNode("node-b")
            try await cluster.waitForReadyNodes(2)

            let plain = try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat)
            #expect(plain.status == 200)
            #expect(plain.headers.first(name: "x-hearth-node")?.count == 12)
            #expect(plain.headers.first(name: "x-request-id") != nil)
            let content = plain.json["choices"]?[0]?["message"]?["content"]?.stringValue ?? ""
            #expect(!content.isEmpty)
            let usage = plain.json["usage"]
            #expect((usage?["completion_tokens"]?.integerValue ?? 0) > 0)
            #expect((usage?["completion_tokens"]?.integerValue ?? 99) <= 16)

            var streaming = chat
            streaming["stream"] = true
            streaming["stream_options"] = ["include_usage": true]
            let streamed = try await HTTP.post(cluster.url + "/v1/chat/completions", json: streaming)
            #expect(streamed.status == 200)
            #expect(streamed.headers.first(name: "content-type") == "text/event-stream")
            #expect(streamed.text.hasSuffix("data: [DONE]\n\n"))
            let events = HTTP.events(streamed.text)
            #expect(!HTTP.streamedText(streamed.text).isEmpty)
            let usageEvent = try #require(events.last)
            #expect(usageEvent["choices"]?.arrayValue?.isEmpty == true)
            #expect((usageEvent["usage"]?["prompt_tokens"]?.integerValue ?? 0) > 0)

            let ollama = try await HTTP.post(
                cluster.url + "/api/chat",
                json: [
                    "model": .string(DefaultModel.id.rawValue),
                    "messages": [["role": "user", "content": "Hi"]], "options": ["num_predict": 8],
                ]
            )
            #expect(ollama.status == 200)
            #expect(ollama.headers.first(name: "content-type") == "application/x-ndjson")
            let lines = ollama.text.split(separator: "\n").map {
                try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8))
            }
            #expect(lines.count >= 2)
            #expect(
                lines.dropLast().allSatisfy {
                    $0?["done"] == false && $0?["message"]?["content"]?.stringValue != nil
                }
            )
            let last = try #require(lines.last ?? nil)
            #expect(last["done"] == true)
            #expect((last["eval_count"]?.integerValue ?? 0) > 0)
            #expect((last["prompt_eval_count"]?.integerValue ?? 0) > 0)
            #expect((last["total_duration"]?.integerValue ?? 0) > 0)

            let models = try await HTTP.get(cluster.url + "/v1/models")
            #expect(
                models.json["data"]?.arrayValue?.map { $0["id"]?.stringValue } == [DefaultModel.id.rawValue]
            )
            #expect(try await cluster.readyNodeCount() == 2)

            // The terminal clients a person uses: `hearth models` and a one-shot `hearth chat`.
            let listing = try await TestProcess(
                name: "models",
                executable: try TestEnvironment.hearthBinary(),
                arguments: ["models", "--url", cluster.url],
                directory: cluster.directory
            )
            #expect(await listing.waitForExit() == 0)
            #expect(listing.output.contains { $0.hasPrefix(DefaultModel.id.rawValue) && $0.contains(" 2 ") })
            // The capacity section lists every catalog model, large ones included, with what it would take.
            #expect(listing.output.contains("CAPACITY at 4096 tokens of context"))
            #expect(listing.output.contains { $0.hasPrefix(DefaultModel.id.rawValue) && $0.hasSuffix("runs on 2 nodes alone") })
            #expect(listing.output.contains { $0.hasPrefix("llama-3.3-70b-instruct:q4_k_m") && $0.contains("needs ") })
            let chatting = try await TestProcess(
                name: "chat",
                executable: try TestEnvironment.hearthBinary(),
                arguments: ["chat", "--url", cluster.url, "--max-tokens", "8", "Say", "hi"],
                directory: cluster.directory
            )
            #expect(await chatting.waitForExit() == 0, "\(chatting.errorOutput)")
            #expect(!chatting.output.joined().trimmingCharacters(in: .whitespaces).isEmpty)
        }
    }

    @Test func survivesSIGKILLOfANodeWithoutClientErrorsAndLeavesNoEngineBehind() async throws {
        try await Cluster.with(label: "failover", gatewayArguments: ["--node-ttl", "2s"]) { cluster in
            let doomed = try await cluster.startNode("node-doomed")
            _ = try await cluster.startNode("node-survivor")
            try await cluster.waitForReadyNodes(2)

            let engines = childProcesses(of: doomed.pid, named: "llama-server")
            #expect(engines.count == 1, "the node runs one engine as its child")
            doomed.send(SIGKILL)
            await doomed.waitForExit()

            // The dead node is still listed until its TTL passes; every request must still succeed.
            var servedBy: Set<String> = []
            for index in 0..<6 {
                var request = chat
                request["max_tokens"] = 4
                request["stream"] = .bool(index % 2 == 0)
                let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: request)
                #expect(reply.status == 200, "request \(index) failed: \(reply.text)")
                servedBy.insert(reply.headers.first(name: "x-hearth-node") ?? "")
            }
            #expect(servedBy.count == 1, "only the surviving node can answer")

            for engine in engines {
                let deadline = ContinuousClock.now + .seconds(10)
                while processIsAlive(engine) && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(!processIsAlive(engine), "llama-server \(engine) outlived its SIGKILLed node")
            }
            try await cluster.waitForReadyNodes(1, timeout: .seconds(15))
        }
    }

    @Test func clientDisconnectMidStreamStopsGenerationOnTheEngine() async throws {
        try await Cluster.with(label: "disconnect") { cluster in
            let node = try await cluster.startNode("node-a", extraArguments: ["--parallel", "1"])
            try await cluster.waitForReadyNodes(1)
            let engine = try #require(childProcesses(of: node.pid, named: "llama-server").first)
            let enginePort = try #require(commandLineValue(of: engine, flag: "--port"))

            // A long generation (EOS ignored), cancelled after its first tokens arrive.
            let long: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "prompt": "Once upon a time",
                "max_tokens": 4000, "ignore_eos": true,
                "stream": true,
            ]
            // Read the stream until tokens flow, check the engine is generating, then drop the connection.
            var request = HTTPClientRequest(url: cluster.url + "/v1/completions")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(long)))
            let generatingWhileStreaming = try await Task {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
                var received = 0
                for try await chunk in response.body {
                    received += chunk.readableBytes
                    if received > 2000 { return try await engineIsProcessing(port: enginePort) }
                }
                return false
            }.value
            #expect(generatingWhileStreaming, "the engine should be generating while the client reads")

            // The engine's only slot must be free again long before 4000 tokens could have been generated.
            let deadline = ContinuousClock.now + .seconds(8)
            var processing = true
            while ContinuousClock.now < deadline {
                processing = try await engineIsProcessing(port: enginePort)
                if !processing { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(!processing, "the engine kept generating after the client left")
        }
    }

    /// Whether any slot of the engine is generating, from llama-server's `/slots`.
    func engineIsProcessing(port: String) async throws -> Bool {
        let slots = try await HTTP.get("http://127.0.0.1:\(port)/slots").json
        return slots.arrayValue?.contains { $0["is_processing"] == true } ?? false
    }
}
