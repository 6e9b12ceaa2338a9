import Foundation
import Testing

@testable import HearthCore

/// Writes GGUF headers for tests.
struct GGUFWriter {
    var bytes: [UInt8] = []

    mutating func u32(_ value: UInt32) { bytes += withUnsafeBytes(of: value.littleEndian, Array.init) }
    mutating func u64(_ value: UInt64) { bytes += withUnsafeBytes(of: value.littleEndian, Array.init) }
    mutating func string(_ text: String) {
        u64(UInt64(text.utf8.count))
        bytes += Array(text.utf8)
    }

    /// A header with every metadata type, a nested array and two tensors.
    static func sample(version: UInt32 = 3, alignment: UInt32? = nil) -> [UInt8] {
        var writer = GGUFWriter()
        writer.bytes += Array("GGUF".utf8)
        writer.u32(version)
        writer.u64(2)  // tensors
        writer.u64(alignment == nil ? 9 : 10)
        writer.string("general.architecture")
        writer.u32(8)
        writer.string("llama")
        writer.string("u8")
        writer.u32(0)
        writer.bytes.append(200)
        writer.string("i16")
        writer.u32(3)
        writer.bytes += [0xFE, 0xFF]  // -2
        writer.string("llama.block_count")
        writer.u32(4)
        writer.u32(30)
        writer.string("f32")
        writer.u32(6)
        writer.u32(Float(1.5).bitPattern)
        writer.string("flag")
        writer.u32(7)
        writer.bytes.append(1)
        writer.string("i64")
        writer.u32(11)
        writer.u64(UInt64(bitPattern: -7))
        writer.string("tokens")
        writer.u32(9)
        writer.u32(8)
        writer.u64(3)
        for token in ["<s>", "hello", "ü"] { writer.string(token) }
        writer.string("nested")
        writer.u32(9)
        writer.u32(9)
        writer.u64(2)
        for row in [[1, 2], [3]] as [[UInt32]] {
            writer.u32(4)
            writer.u64(UInt64(row.count))
            for value in row { writer.u32(value) }
        }
        if let alignment {
            writer.string("general.alignment")
            writer.u32(4)
            writer.u32(alignment)
        }
        for (name, dims) in [("token_embd.weight", [576, 49152]), ("output_norm.weight", [576])] as [(String, [UInt64])] {
            writer.string(name)
            writer.u32(UInt32(dims.count))
            for dim in dims { writer.u64(dim) }
            writer.u32(1)
            writer.u64(0)
        }
        return writer.bytes
    }
}

struct GGUFTests {
    @Test func readsEveryMetadataTypeAndTheTensorTable() throws {
        let bytes = GGUFWriter.sample()
        let header = try GGUFHeader(bytes: bytes)
        #expect(header.version == 3)
        #expect(header.architecture == "llama")
        #expect(header["u8"] == .uint(200))
        #expect(header["i16"] == .int(-2))
        #expect(header["llama.block_count"]?.integer == 30)
        #expect(header["f32"] == .float(1.5))
        #expect(header["flag"] == .bool(true))
        #expect(header["i64"] == .int(-7))
        #expect(header["tokens"]?.array?.compactMap(\.string) == ["<s>", "hello", "ü"])
        #expect(header["nested"]?.array?.map { $0.array?.compactMap(\.integer) ?? [] } == [[1, 2], [3]])
        #expect(header.tensors.map(\.name) == ["token_embd.weight", "output_norm.weight"])
        #expect(header.tensors[0].elementCount == 576 * 49152)
        #expect(header.alignment == 32)
        #expect(header.dataOffset % 32 == 0 && header.dataOffset >= UInt64(bytes.count) && header.dataOffset < UInt64(bytes.count) + 32)
        #expect(try GGUFHeader(bytes: GGUFWriter.sample(version: 2)).version == 2)
        #expect(try GGUFHeader(bytes: GGUFWriter.sample(alignment: 64)).dataOffset % 64 == 0)
    }

    @Test func everyTruncationAsksForMoreBytes() throws {
        let bytes = GGUFWriter.sample()
        for length in 0..<bytes.count {
            do {
                _ = try GGUFHeader(bytes: bytes.prefix(length))
                Issue.record("a header cut at \(length) bytes was accepted")
            } catch  where error.code == .truncated {
                let needed = try #require(error.neededBytes, "a truncation says how many bytes it needs")
                #expect(needed > UInt64(length), "cut at \(length), asked for \(needed)")
            } catch {
                Issue.record("cut at \(length): \(error)")
            }
        }
    }

    @Test func refusesCorruptHeaders() {
        func patched(_ change: (inout [UInt8]) -> Void) -> [UInt8] {
            var bytes = GGUFWriter.sample()
            change(&bytes)
            return bytes
        }
        #expect(throws: GGUFError.notGGUF) { try GGUFHeader(bytes: patched { $0[0] = 0x46 }) }
        #expect(throws: GGUFError.unsupportedVersion(1)) { try GGUFHeader(bytes: GGUFWriter.sample(version: 1)) }
        #expect(throws: GGUFError.invalid("impossible counts")) { try GGUFHeader(bytes: patched { $0[15] = 0xFF }) }
        #expect(throws: GGUFError.invalid("general.alignment must be a power of two")) { try GGUFHeader(bytes: GGUFWriter.sample(alignment: 48)) }

        var hostile = GGUFWriter()
        hostile.bytes += Array("GGUF".utf8)
        hostile.u32(3)
        hostile.u64(0)
        hostile.u64(1)
        hostile.string("big")
        hostile.u32(9)
        hostile.u32(10)
        hostile.u64(1 << 40)  // a trillion-element array in a few bytes
        #expect(throws: GGUFError.invalid("an array of 1099511627776 elements")) { try GGUFHeader(bytes: hostile.bytes) }

        var huge = GGUFWriter()
        huge.bytes += Array("GGUF".utf8)
        huge.u32(3)
        huge.u64(0)
        huge.u64(1)
        huge.u64(UInt64.max)  // key length
        #expect(throws: GGUFError.invalid("a string of 18446744073709551615 bytes")) { try GGUFHeader(bytes: huge.bytes) }

        var deep = GGUFWriter()
        deep.bytes += Array("GGUF".utf8)
        deep.u32(3)
        deep.u64(0)
        deep.u64(1)
        deep.string("deep")
        deep.u32(9)
        for _ in 0..<5 {
            deep.u32(9)
            deep.u64(1)
        }
        #expect(throws: GGUFError.invalid("arrays nested too deep")) { try GGUFHeader(bytes: deep.bytes + [0, 0, 0, 0]) }
    }

    /// Random corruption of a valid header: always an answer or a `GGUFError`, never a trap.
    @Test func randomCorruptionNeverCrashes() async {
        let original = GGUFWriter.sample()
        var generator = SplitMix(seed: 0x6767_7566)
        var refused = 0
        for iteration in 0..<20_000 {
            await pace(iteration)
            var bytes = original
            for _ in 0..<(1 + Int(generator.next() % 4)) {
                bytes[Int(generator.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: generator.next())
            }
            if (try? GGUFHeader(bytes: bytes)) == nil { refused += 1 }
        }
        #expect(refused > 0)
    }
}

/// The fuzzer's corpus (fuzz/gguf/corpus) replayed through the reader: every input either parses to a consistent
/// header or is refused with a `GGUFError`.
@Suite struct GGUFCorpusTests {
    @Test func everyCorpusInputIsParsedOrRefused() async throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../fuzz/gguf/corpus").standardized
        let names = try FileManager.default.contentsOfDirectory(atPath: corpus.path)
        #expect(names.count > 100)
        var parsed = 0
        for (index, name) in names.enumerated() {
            await pace(index, every: 16)
            let bytes = try Data(contentsOf: corpus.appendingPathComponent(name))
            switch Result(catching: { () throws(GGUFError) in try GGUFHeader(bytes: bytes) }) {
            case .success(let header):
                parsed += 1
                #expect(header.dataOffset % header.alignment == 0, "\(name)")
            case .failure(let error) where error.code == .truncated:
                #expect((error.neededBytes ?? 0) > UInt64(bytes.count), "\(name)")
            case .failure:
                break
            }
        }
        #expect(parsed > 0, "the corpus keeps some valid headers")
    }
}
