import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// `hearth gguf inspect` on the real default model, and on files that are not GGUF.
struct GGUFInspectTests {
    @Test func printsTheDefaultModelsMetadataWithTheTokenizerSummarised() async throws {
        let directory = try TestEnvironment.temporaryDirectory("gguf-inspect")
        let run = try await TestProcess.hearth(["gguf", "inspect", try TestEnvironment.defaultModel()], in: directory)
        #expect(run.status == 0, "\(run.errors)")
        #expect(run.output.contains("general.architecture=\"llama\""))
        #expect(run.output.contains("llama.block_count=30"))
        #expect(run.output.contains("tensors=272"))
        #expect(run.output.contains { $0.hasPrefix("tokenizer.ggml.tokens=[") && $0.hasSuffix("(49152 elements)") })
        #expect(run.output.allSatisfy { $0.count < 400 }, "a value spilled over several lines or was not summarised")

        let notGGUF = directory + "/not.gguf"
        try Data("definitely not a model file".utf8).write(to: URL(fileURLWithPath: notGGUF))
        let refused = try await TestProcess.hearth(["gguf", "inspect", notGGUF], in: directory)
        #expect(refused.status != 0)
        #expect(refused.errors.contains("not a GGUF file"))
    }
}
