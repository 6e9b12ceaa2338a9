import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Ollama's listings describe a served model from the catalog, as Ollama describes the file: clients show the
/// parameter size and quantization, and Continue sizes its prompts by `<architecture>.context_length`.
struct OllamaModelCardTests {
    /// An owner's server (`--backend`) reports no file size; the entry's is the pinned file's.
    static func backendNode(serving model: ModelID, contextLength: Int = 2048) -> NodeAnnouncement {
        var node = announcement(nodeA, model: model)
        node.report.models[0].sizeBytes = 0
        node.report.models[0].contextLength = contextLength
        return node
    }

    @Test func listingsDescribeTheModelAsTheCatalogDoes() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            announce(gateway, Self.backendNode(serving: DefaultModel.id))
            try await client.execute(uri: "/api/tags", method: .get) { response in
                let tag = decode(response.body)["models"]?[0]
                #expect(tag?["size"]?.integerValue == 98_362_432)
                #expect(tag?["details"]?["parameter_size"] == "134.52M")
                #expect(tag?["details"]?["quantization_level"] == "Q4_1")
                #expect(tag?["details"]?["family"] == "llama")
            }
            let show = try json(["model": .string(DefaultModel.id.rawValue)])
            try await client.execute(uri: "/api/show", method: .post, body: show) { response in
                let answer = decode(response.body)
                let info = answer["model_info"]
                #expect(info?["general.architecture"] == "llama")
                #expect(info?["general.parameter_count"]?.integerValue == 134_515_008)
                // The context its nodes serve, not the 8,192 the model was trained for.
                #expect(info?["llama.context_length"]?.integerValue == 2048)
                #expect(info?["llama.embedding_length"]?.integerValue == 576)
                #expect(answer["capabilities"] == ["completion"])
                #expect(answer["license"] == "Apache-2.0")
            }
            // A name without quantization, or with Ollama's default tag, is the catalog's choice, as for a chat.
            for name in ["smollm2-135m-instruct", "smollm2-135m-instruct:latest"] {
                try await client.execute(uri: "/api/show", method: .post, body: try json(["model": .string(name)])) { response in
                    #expect(response.status == .ok, "\(name)")
                    #expect(decode(response.body)["details"]?["parameter_size"] == "134.52M", "\(name)")
                }
            }
            try await client.execute(uri: "/api/show", method: .post, body: try json(["model": "smollm2-360m-instruct:latest"])) { response in
                #expect(response.status == .notFound)
            }
        }
    }

    @Test func anEmbeddingModelSaysSoAndAnEntryWithoutArchitectureFallsBackToItsFamily() async throws {
        let embedder = pinnedEntry(
            "house-embed:q8_0",
            family: "house-bert",
            parameters: 136_727_040,
            tier: .embed,
            shape: ModelShape(layers: 12, kvHeads: 12, headDim: 64, embedding: 768)
        )
        let (gateway, _) = try await makeGateway([:]) { $0.catalog = try! Catalog(entries: [embedder]) }
        try await gateway.application.test(.router) { client in
            announce(gateway, Self.backendNode(serving: embedder.id, contextLength: 512))
            let show = try json(["model": .string(embedder.id.rawValue)])
            try await client.execute(uri: "/api/show", method: .post, body: show) { response in
                let answer = decode(response.body)
                #expect(answer["capabilities"] == ["embedding"])
                #expect(answer["details"]?["family"] == "house-bert")
                #expect(answer["details"]?["parameter_size"] == "136.73M")
                #expect(answer["model_info"]?["house-bert.context_length"]?.integerValue == 512)
            }
        }
    }

    @Test(arguments: [
        (UInt64(134_515_008), "134.52M"), (494_032_768, "494.03M"), (8_030_261_248, "8.0B"), (7_000_000_000, "7B"),
        (70_553_706_496, "70.6B"), (3_000_000, "3M"), (1_499, "1K"), (999, "999"),
    ])
    func parameterCountsAreWrittenAsOllamaWritesThem(count: UInt64, text: String) {
        #expect(OllamaModelCard.parameterSize(count) == text)
    }
}
