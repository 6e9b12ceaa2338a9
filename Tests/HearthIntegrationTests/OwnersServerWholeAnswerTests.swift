import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore

/// An owner's server that answers a stream's request whole (`application/json`), as servers that ignore `stream` do:
/// the client that asked for a stream gets one, from the node's events of the answer. Real gateway and node processes;
/// the owner's server is a named fake (`FakeOpenAIServer`), since the real servers here all stream.
struct OwnersServerWholeAnswerTests {
    @Test func aStreamAnsweredWholeReachesTheClientAsAStream() async throws {
        var script = try BackendTests.ollamaScript()
        script.streamsWhole = true
        let fake = try await FakeOpenAIServer.start(script)
        defer { Task { await fake.stop() } }
        try await Cluster.with(label: "backend-whole") { cluster in
            _ = try await cluster.startNode("whole", serving: BackendTests.backend(fake.baseURL, name: "smollm2-hearth:latest"))
            try await cluster.waitForReadyNodes(1)

            let stream = try await HTTP.post(cluster.url + "/v1/chat/completions", json: BackendTests.streamed(BackendTests.question))
            try #require(stream.status == 200, "\(stream.status) \(stream.text.prefix(300))")
            #expect(stream.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
            #expect(fake.requests.last?.body["stream"] == true, "the server was not asked for a stream")
            let events = HTTP.events(stream.text)
            #expect(HTTP.streamedText(stream.text) == "Paris is the capital of France.", "\(stream.text.prefix(600))")
            #expect(stream.text.hasSuffix("data: [DONE]\n\n"), "\(stream.text.suffix(200))")
            #expect(!events.isEmpty && events.allSatisfy { $0["object"] == "chat.completion.chunk" }, "\(stream.text.prefix(600))")
            #expect(events.allSatisfy { $0["model"]?.stringValue == DefaultModel.id.rawValue }, "the server's own model name reached the client")
            #expect(events.contains { $0["choices"]?[0]?["finish_reason"] == "stop" })
            // Metered by the answer's usage, as a streamed one would be.
            let usage = try #require(events.last { $0["usage"] != nil }?["usage"])
            #expect(usage["completion_tokens"] == 8)
            let entry = try await BackendTests.ledgerEntry(cluster, try #require(stream.headers.first(name: "x-request-id")))
            #expect(entry["completion_tokens"] == 8 && entry["prompt_tokens"] == 31, "\(entry)")

            // Through Ollama's API on the gateway: its lines, from the same events.
            let ollama = try await HTTP.post(
                cluster.url + "/api/chat",
                json: ["model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "hi"]], "stream": true]
            )
            let lines = ollama.text.split(separator: "\n").compactMap { try? JSONValue.parse(Array($0.utf8)) }
            #expect(lines.compactMap { $0["message"]?["content"]?.stringValue }.joined() == "Paris is the capital of France.", "\(ollama.text)")
            #expect(lines.last?["done"] == true)
        }
    }
}
