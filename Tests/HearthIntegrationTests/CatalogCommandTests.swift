import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// `hearth catalog` and `hearth size` as an operator runs them.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct CatalogCommandTests {
    @Test func pinningWritesTheOperatorsFileAndListsTheEntryAsPinned() async throws {
        let directory = try TestEnvironment.temporaryDirectory("catalog-cli")
        let hash = String(repeating: "5a", count: 32)
        let pin = try await TestProcess.hearth(
            ["catalog", "pin", "qwen2.5-7b-instruct:q8_0", "--sha256", hash, "--size", "8098525888", "--data-dir", directory],
            in: directory
        )
        #expect(pin.status == 0, "\(pin.errors)")
        let file = try #require(FileManager.default.contents(atPath: directory + "/catalog.json"))
        let (overlay, _) = try Catalog.decode(file)
        // Only the pinned entry is in the operator's file; the built-in catalog is untouched.
        #expect(overlay.entries.map(\.id.rawValue) == ["qwen2.5-7b-instruct:q8_0"])
        #expect(overlay.entries.first?.sizeBytes == 8_098_525_888)
        let list = try await TestProcess.hearth(["catalog", "list", "--data-dir", directory], in: directory)
        #expect(list.output.contains { $0.hasPrefix("qwen2.5-7b-instruct:q8_0") && $0.hasSuffix(String(hash.prefix(16))) })
        #expect(list.output.contains { $0.hasPrefix("llama-3.1-8b-instruct:q8_0") && $0.hasSuffix("no") })

        let refused = try await TestProcess.hearth(["catalog", "pin", "nope:q8_0", "--sha256", hash, "--data-dir", directory], in: directory)
        #expect(refused.status != 0)
        #expect(refused.errors.contains("the catalog has no model nope:q8_0"))
        try Data("{\"version\": 1, \"models\": [{\"id\": \"x\"}]}".utf8).write(to: URL(fileURLWithPath: directory + "/catalog.json"))
        let broken = try await TestProcess.hearth(["catalog", "list", "--data-dir", directory], in: directory)
        #expect(broken.status != 0)
        #expect(broken.errors.contains("is not usable"), "\(broken.errors)")
    }

    @Test func sizePrintsTheEstimateByPart() async throws {
        let directory = try TestEnvironment.temporaryDirectory("size-cli")
        let size = try await TestProcess.hearth(
            ["size", "smollm2-135m-instruct", "--context", "2048", "--parallel", "2", "--data-dir", directory, "--url", "http://127.0.0.1:9"],
            in: directory
        )
        #expect(size.status == 0, "\(size.errors)")
        #expect(size.output.contains("model      smollm2-135m-instruct:q4_1"))
        #expect(size.output.contains("kv cache   90.0 MiB"))
        #expect(size.output.contains { $0.hasPrefix("total      ") })
        #expect(size.output.contains("nodes      unknown: no gateway answered at http://127.0.0.1:9"))
    }

    /// A mistake found while a command runs (here a model the catalog lists without pinning it) is told with that
    /// command's help, as a mistyped option is; it printed the root's list of commands before.
    @Test func aMistakeFoundWhileRunningPointsToThatCommandsHelp() async throws {
        let directory = try TestEnvironment.temporaryDirectory("run-failure")
        let join = "127.0.0.1:9#" + String(repeating: "a", count: 64)
        let node = try await TestProcess.hearth(
            ["node", "--model", "qwen2.5-7b-instruct:q8_0", "--join", join, "--data-dir", directory, "--no-dashboard"],
            in: directory
        )
        #expect(node.status == 64, "\(node.errors)")
        #expect(node.errors.contains("qwen2.5-7b-instruct:q8_0 is not pinned in the catalog"), "\(node.errors)")
        #expect(node.errors.contains("See 'hearth node --help'"), "\(node.errors)")
        #expect(!node.errors.contains("<subcommand>"), "\(node.errors)")
    }
}
