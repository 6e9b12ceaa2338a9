import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore

/// A request for a model no node serves (SmolLM2 360M, in the catalog but not pinned) is served by a smaller one of
/// its family (SmolLM2 135M, on a real node) only when it allows it, and the answer says so.
@Suite(.serialized, .timeLimit(.minutes(4)))
struct DegradationTests {
    static let asked = "smollm2-360m-instruct:q8_0"

    @Test func aRequestThatAllowsItIsServedByASmallerModelOfItsFamilyAndSaysSo() async throws {
        try await Cluster.with(label: "degrade") { cluster in
            _ = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            let chat: JSONValue = [
                "model": .string(Self.asked), "messages": [["role": "user", "content": "Hi"]], "max_tokens": 8, "temperature": 0,
            ]
            let refused = try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat)
            #expect(refused.status == 404, "\(refused.text)")

            let allow = [("X-Hearth-Allow-Degrade", "1")]
            let whole = try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat, headers: allow)
            #expect(whole.status == 200, "\(whole.text)")
            #expect(whole.headers.first(name: "x-hearth-degraded-from") == Self.asked)
            #expect(whole.headers.first(name: "x-hearth-served-model") == DefaultModel.id.rawValue)
            #expect(whole.json["model"]?.stringValue == DefaultModel.id.rawValue, "the body names what served it")

            var streaming = chat
            streaming["stream"] = true
            let streamed = try await HTTP.post(cluster.url + "/v1/chat/completions", json: streaming, headers: allow)
            #expect(streamed.headers.first(name: "x-hearth-degraded-from") == Self.asked)
            #expect(HTTP.events(streamed.text).allSatisfy { $0["model"]?.stringValue == DefaultModel.id.rawValue })

            let ollama = try await HTTP.post(
                cluster.url + "/api/chat",
                json: ["model": .string(Self.asked), "messages": [["role": "user", "content": "Hi"]], "options": ["num_predict": 4]],
                headers: allow
            )
            #expect(ollama.status == 200)
            #expect(ollama.headers.first(name: "x-hearth-served-model") == DefaultModel.id.rawValue)
            let lines = ollama.text.split(separator: "\n").compactMap { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
            #expect(!lines.isEmpty && lines.allSatisfy { $0["model"]?.stringValue == DefaultModel.id.rawValue })

            // Usage is recorded under the model that served.
            let usage = try await HTTP.get(cluster.url + "/metrics").text
            #expect(usage.contains("model=\"\(DefaultModel.id.rawValue)\""))
            #expect(!usage.contains("model=\"\(Self.asked)\""))
        }
    }
}
