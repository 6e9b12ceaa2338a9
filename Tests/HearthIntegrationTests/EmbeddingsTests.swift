import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore

/// Embeddings from a real engine: no embedding GGUF can be had with an authoritative hash from the package registries
/// this project may use, so the node serves SmolLM2's own with mean pooling (`hearth node --embeddings`). What is
/// tested is the path (routing, both APIs, metering, receipts), not the vectors' quality.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct EmbeddingsTests {
    static func norm(_ vector: [Double]) -> Double { vector.reduce(0) { $0 + $1 * $1 }.squareRoot() }
    static func cosine(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } / (norm(a) * norm(b)) }
    static func vector(_ value: JSONValue?) -> [Double] { value?.arrayValue?.compactMap(\.doubleValue) ?? [] }

    @Test func aNodeServesEmbeddingsFromItsEngineAndIsCreditedForThem() async throws {
        try await Cluster.with(label: "embeddings") { cluster in
            let node = try await cluster.startNode("node-a", extraArguments: ["--embeddings"])
            try await cluster.waitForReadyNodes(1)
            let engine = try #require(childProcesses(of: node.pid, named: "llama-server").first)
            #expect(commandLineValue(of: engine, flag: "--pooling") == "mean")
            let model = JSONValue.string(DefaultModel.id.rawValue)

            let texts = ["The cat sat on the mat.", "Stock markets fell sharply today.", "The cat sat on the mat."]
            let reply = try await HTTP.post(cluster.url + "/v1/embeddings", json: ["model": model, "input": .array(texts.map { .string($0) })])
            try #require(reply.status == 200, "\(reply.status) \(reply.text.prefix(500))")
            let vectors = (reply.json["data"]?.arrayValue ?? []).map { Self.vector($0["embedding"]) }
            #expect(vectors.count == 3)
            #expect(vectors.allSatisfy { $0.count == 576 }, "SmolLM2's embedding width is 576")
            #expect(vectors.allSatisfy { abs(Self.norm($0) - 1) < 1e-3 }, "the engine normalises its vectors")
            #expect(Self.cosine(vectors[0], vectors[2]) > 0.9999, "the same text gave another vector")
            #expect(Self.cosine(vectors[0], vectors[1]) < 0.999, "different texts gave the same vector")
            let prompt = try #require(reply.json["usage"]?["prompt_tokens"]?.integerValue)
            #expect(prompt >= 6)

            // Ollama's shapes, from the same engine.
            let ollama = try await HTTP.post(cluster.url + "/api/embed", json: ["model": model, "input": .string(texts[0])])
            #expect(ollama.status == 200)
            let single = Self.vector(ollama.json["embeddings"]?[0])
            #expect(single.count == 576 && Self.cosine(single, vectors[0]) > 0.999)
            let legacy = try await HTTP.post(cluster.url + "/api/embeddings", json: ["model": model, "prompt": .string(texts[1])])
            #expect(Self.cosine(Self.vector(legacy.json["embedding"]), vectors[1]) > 0.999)

            // The engine still completes.
            let chat = try await HTTP.post(
                cluster.url + "/v1/chat/completions",
                json: ["model": model, "messages": [["role": "user", "content": "hi"]], "max_tokens": 4]
            )
            #expect(chat.status == 200)

            // Metered and credited: the ledger holds the node's receipt for the embeddings, prompt tokens only.
            let requestID = try #require(reply.headers.first(name: "x-request-id"))
            let entry = try await eventually("the embeddings' ledger entry") {
                let entries = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue ?? []
                return entries.first { $0["request_id"]?.stringValue == requestID }
            }
            #expect(entry["prompt_tokens"]?.integerValue == prompt)
            #expect(entry["completion_tokens"]?.integerValue == 0)
        }
    }
}
