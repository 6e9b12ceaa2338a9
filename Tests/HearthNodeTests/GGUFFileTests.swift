import Foundation
import HearthCore
import HearthTesting
import Testing

/// The GGUF reader on the real default model (SmolLM2-135M-Instruct Q4_1), reading only the header.
struct GGUFFileTests {
    @Test func readsTheDefaultModelsHeaderFromItsFirstBytes() throws {
        let path = try TestEnvironment.defaultModel()
        let handle = try #require(FileHandle(forReadingAtPath: path))
        defer { try? handle.close() }
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64 ?? 0
        // Start small and grow to what the reader asks for, as a range reader over HTTP does.
        var length: UInt64 = 64 << 10
        var reads = 0
        var header: GGUFHeader?
        while header == nil, reads < 10 {
            try handle.seek(toOffset: 0)
            let bytes = try handle.read(upToCount: Int(length)) ?? Data()
            reads += 1
            switch Result(catching: { () throws(GGUFError) in try GGUFHeader(bytes: bytes) }) {
            case .success(let parsed): header = parsed
            case .failure(.truncated(let needed)): length = max(needed, length * 2)
            case .failure(let error): throw error
            }
        }
        let model = try #require(header)
        #expect(reads > 1, "the tokenizer makes the header larger than 64 KiB")
        #expect(model.architecture == "llama")
        #expect(model["llama.block_count"]?.integer == 30)
        #expect(model["llama.embedding_length"]?.integer == 576)
        #expect(model["llama.attention.head_count_kv"]?.integer == 3)
        #expect(model["tokenizer.ggml.tokens"]?.array?.count == 49152)
        #expect(model.tensors.contains { $0.name == "token_embd.weight" && $0.dimensions == [576, 49152] })
        #expect(model.dataOffset % model.alignment == 0)
        #expect(model.dataOffset < size && size - model.dataOffset > 50_000_000)
        #expect(model.dataOffset <= length)
    }
}
