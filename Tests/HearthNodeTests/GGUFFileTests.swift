import Foundation
import HearthTesting
import Testing

@testable import HearthCore
@testable import HearthNode

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
            case .failure(let error) where error.code == .truncated: length = max(error.neededBytes ?? 0, length * 2)
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

/// `GGUFSource` over HTTP: only the header's bytes are fetched, with Range requests.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct GGUFURLTests {
    @Test func readsTheHeaderOverHTTPWithRangeRequestsOnly() async throws {
        let path = try TestEnvironment.defaultModel()
        let model = try #require(FileManager.default.contents(atPath: path))
        let local = try await GGUFSource.header(atPath: path)
        let server = try await FileServer.start(files: ["smol.gguf": model, "junk.gguf": Data(repeating: 7, count: 4096)])
        do {
            let (header, size) = try await GGUFSource.header(url: server.url("smol.gguf"))
            #expect(header == local)
            #expect(size == UInt64(model.count))
            // The header is 1.7 MiB: a first 1 MiB read, then one grown read; never the 98 MB of weights.
            #expect(server.rangesSeen == ["bytes=0-1048575", "bytes=0-\(max(2 << 20, Int(local.dataOffset)) - 1)"])
            #expect(ModelShape(header: header) == ModelShape(layers: 30, kvHeads: 3, headDim: 64, embedding: 576, architecture: "llama"))

            server.then(.ignoreRange)
            #expect(try await GGUFSource.header(url: server.url("smol.gguf")).header == local)

            for (name, expected) in [("junk.gguf", "no GGUF magic"), ("missing.gguf", "HTTP 404")] {
                do {
                    _ = try await GGUFSource.header(url: server.url(name))
                    Issue.record("\(name) must be refused")
                } catch let error as GGUFSourceError {
                    #expect(error.description.contains(expected), "\(error)")
                }
            }
            server.then(.truncated(bytes: 1_500_000), .truncated(bytes: 1_500_000))
            do {
                _ = try await GGUFSource.header(url: server.url("smol.gguf"))
                Issue.record("a file that ends inside its header must be refused")
            } catch let error as GGUFSourceError {
                #expect(error.description.contains("ends inside its GGUF header"), "\(error)")
            }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}
