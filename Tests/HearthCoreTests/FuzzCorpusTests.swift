import Foundation
import HearthFuzzing
import Testing

@testable import HearthCore

/// Replays every committed fuzz corpus (`fuzz/<target>/corpus`) and every input a fuzzer once crashed on
/// (`fuzz/<target>/regressions`) through the same checks `hearth-fuzz` runs, so a parser change that breaks one
/// of them fails here, without a fuzzer.
struct FuzzCorpusTests {
    static let fuzzFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fuzz")

    static func inputs(_ target: String, _ folder: String) -> [URL] {
        let directory = fuzzFolder.appendingPathComponent(target).appendingPathComponent(folder)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().map { directory.appendingPathComponent($0) }
    }

    @Test(arguments: FuzzTarget.all.map(\.name))
    func corpusKeepsEveryProperty(target name: String) async throws {
        let target = try #require(FuzzTarget.named(name))
        let files = Self.inputs(name, "corpus") + Self.inputs(name, "regressions")
        #expect(files.count >= 2, "fuzz/\(name)/corpus is missing or nearly empty")
        for (index, file) in files.enumerated() {
            await pace(index, every: 16)
            let bytes = Array(try Data(contentsOf: file))
            if let problem = target.check(bytes) { Issue.record("\(name)/\(file.lastPathComponent): \(problem)") }
        }
    }

    @Test(arguments: FuzzTarget.all.map(\.name))
    func seedsAreInputsTheParserAccepts(target name: String) throws {
        // The seeds come from Hearth's own encoders, so each must pass its target's checks: a seed that broke one
        // would mean the encoder and the parser disagree.
        let target = try #require(FuzzTarget.named(name))
        for seed in FuzzSeeds.seeds(for: name) {
            #expect(target.check(seed) == nil)
        }
    }
}
