import Crypto
import Foundation
import HearthTesting
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthNode

/// Downloads from a real HTTP server on loopback: resumed, verified, refused. Nothing reaches the internet.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ModelStoreTests {
    /// 10 MiB of pseudo-random bytes standing for a model file (three 4 MiB write batches).
    static let file: Data = {
        var bytes = [UInt8](repeating: 0, count: 10 << 20)
        var generator = SystemRandomNumberGenerator()
        bytes.withUnsafeMutableBytes { buffer in
            for index in stride(from: 0, to: buffer.count, by: 8) {
                buffer.storeBytes(of: generator.next() as UInt64, toByteOffset: index, as: UInt64.self)
            }
        }
        return Data(bytes)
    }()
    static let digest = HearthCore.SHA256Digest(hex: Hex.encode(SHA256.hash(data: file)))!

    static func entry(_ server: FileServer, sizeBytes: UInt64 = UInt64(file.count), sha256: HearthCore.SHA256Digest? = digest) -> CatalogEntry {
        CatalogEntry(
            id: ModelID("test-download:q8_0")!,
            name: "test",
            family: "test",
            parameters: 1,
            tier: .tiny,
            quantization: "Q8_0",
            contextLength: 512,
            licence: "MIT",
            sizeBytes: sizeBytes,
            shape: ModelShape(layers: 1, kvHeads: 1, headDim: 1, embedding: 1),
            sources: [server.url("model.gguf")],
            sha256: sha256
        )
    }

    static func withServer(_ body: (FileServer, ModelStore, String) async throws -> Void) async throws {
        let server = try await FileServer.start(files: ["model.gguf": file])
        let directory = try TestEnvironment.temporaryDirectory("store")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            try await body(server, ModelStore(directory: directory), directory)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    static func fetchError(_ store: ModelStore, _ entry: CatalogEntry) async -> ModelStoreError? {
        do {
            _ = try await store.fetch(entry)
            return nil
        } catch {
            return error as? ModelStoreError
        }
    }

    @Test func downloadsVerifiesAndRenamesIntoPlace() async throws {
        try await Self.withServer { server, store, directory in
            let progress = ProgressLog()
            let path = try await store.fetch(Self.entry(server)) { received, total in progress.add(received, total) }
            #expect(path == directory + "/\(Self.digest.hex).gguf")
            #expect(FileManager.default.contents(atPath: path) == Self.file)
            #expect(!FileManager.default.fileExists(atPath: path + ".part"))
            let steps = progress.steps
            #expect(steps.count >= 3, "one report per 4 MiB batch")
            #expect(steps.last?.0 == UInt64(Self.file.count) && steps.last?.1 == UInt64(Self.file.count))
            // A second fetch finds the file and asks the server nothing.
            _ = try await store.fetch(Self.entry(server))
            #expect(server.rangesSeen == [""])
        }
    }

    @Test func resumesWithARangeAfterTheServerDropsTheConnection() async throws {
        try await Self.withServer { server, store, _ in
            server.then(.dropAfter(bytes: 6 << 20))
            let path = try await store.fetch(Self.entry(server))
            #expect(FileManager.default.contents(atPath: path) == Self.file)
            let ranges = server.rangesSeen
            #expect(ranges.count == 2)
            // The second request starts after what the first one delivered (at least the first 4 MiB batch).
            let resumedAt = ranges.last.flatMap { Int($0.dropFirst(6).dropLast()) } ?? 0
            #expect(resumedAt > 0 && resumedAt <= 6 << 20, "\(ranges)")
        }
    }

    @Test func aServerThatIgnoresRangesIsDownloadedFromTheStart() async throws {
        try await Self.withServer { server, store, _ in
            server.then(.dropAfter(bytes: 5 << 20), .ignoreRange)
            let path = try await store.fetch(Self.entry(server))
            #expect(FileManager.default.contents(atPath: path) == Self.file)
        }
    }

    @Test func refusesACorruptedByteAndKeepsNothing() async throws {
        try await Self.withServer { server, store, directory in
            server.then(.corruptByte(offset: 7_000_000))
            let error = await Self.fetchError(store, Self.entry(server))
            guard case .hashMismatch(_, let expected, let actual)? = error else {
                Issue.record("expected a hash mismatch, got \(String(describing: error))")
                return
            }
            #expect(expected == Self.digest && actual != Self.digest)
            #expect(error?.description.contains("it was deleted") == true)
            #expect((try? FileManager.default.contentsOfDirectory(atPath: directory)) == [])
        }
    }

    @Test func refusesATruncatedFile() async throws {
        try await Self.withServer { server, store, directory in
            server.then(.truncated(bytes: 3 << 20))
            guard case .hashMismatch? = await Self.fetchError(store, Self.entry(server)) else {
                Issue.record("a truncated file must be refused")
                return
            }
            #expect((try? FileManager.default.contentsOfDirectory(atPath: directory)) == [])
        }
    }

    @Test func refusesAnUnpinnedEntryAndOneWithoutASource() async throws {
        try await Self.withServer { server, store, _ in
            #expect(await Self.fetchError(store, Self.entry(server, sha256: nil)) == .notPinned(ModelID("test-download:q8_0")!))
            var entry = Self.entry(server)
            entry.sources = ["pypi:some-wheel==1.0"]
            #expect(await Self.fetchError(store, entry) == .noSource(entry.id))
            #expect(server.rangesSeen.isEmpty)
        }
    }

    /// A 4 MiB tmpfs: the declared size is refused before any byte moves; a file larger than declared fills the
    /// disk mid-way and is refused with the same clear error, its part file deleted.
    @Test func refusesToFillAFullDisk() async throws {
        let disk = try TestEnvironment.tinyFileSystem(megabytes: 4)
        defer { disk.unmount() }
        let mountPoint = disk.path
        let server = try await FileServer.start(files: ["model.gguf": Self.file])
        let store = ModelStore(directory: mountPoint)
        guard case .diskFull(let needed, let free, _)? = await Self.fetchError(store, Self.entry(server)) else {
            Issue.record("a download larger than the free space must be refused")
            await server.stop()
            return
        }
        #expect(needed == UInt64(Self.file.count) && free <= 4 << 20)
        #expect(server.rangesSeen.isEmpty, "refused before the download started")
        let lying = await Self.fetchError(store, Self.entry(server, sizeBytes: 1 << 20))
        guard case .diskFull? = lying else {
            Issue.record("a full disk mid-way must be refused as such, got \(String(describing: lying))")
            await server.stop()
            return
        }
        #expect(lying?.description.contains("not enough disk space") == true)
        #expect((try? FileManager.default.contentsOfDirectory(atPath: mountPoint)) == [])
        await server.stop()
    }
}

/// Progress reports, collected from the download's callbacks.
final class ProgressLog: Sendable {
    private let log = Mutex<[(UInt64, UInt64)]>([])
    func add(_ received: UInt64, _ total: UInt64) { log.withLock { $0.append((received, total)) } }
    var steps: [(UInt64, UInt64)] { log.withLock { $0 } }
}
