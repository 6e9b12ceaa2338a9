import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// `hearth-bench` on a tiny configuration, so the benchmark does not rot between the runs whose figures are committed.
/// It checks the report's shape and that nothing failed, never a figure: timings belong in `bench/`, not in tests.
extension OneAtATime {
    @Suite(.serialized, .timeLimit(.minutes(5)))
    struct BenchSmokeTests {
        static var bench: String {
            get throws { (try TestEnvironment.hearthBinary() as NSString).deletingLastPathComponent + "/hearth-bench" }
        }

        @Test func theBenchmarkRunsEveryDefaultPartOnATinyConfiguration() async throws {
            let directory = try TestEnvironment.temporaryDirectory("bench-smoke")
            let report = directory + "/report.md"
            let run = try await TestProcess(
                name: "hearth-bench",
                executable: try Self.bench,
                arguments: ["--parts", "1,2,3", "--rounds", "1", "--clients", "2", "--seconds", "1", "--tunnel-mb", "1", "--out", report],
                environment: ["HEARTH_BIN_DIR": (try TestEnvironment.hearthBinary() as NSString).deletingLastPathComponent],
                directory: directory
            )
            let status = await run.waitForExit(timeout: .seconds(240))
            try #require(status == 0, "hearth-bench failed:\n\(run.output.suffix(20).joined(separator: "\n"))\n\(run.errorOutput.suffix(3000))")
            let text = try String(contentsOfFile: report, encoding: .utf8)
            for section in ["## 1. Gateway overhead", "## 2. The secure link against plain HTTP", "## 3. Tunnel throughput"] {
                #expect(text.contains(section), "no section '\(section)'")
            }
            #expect(text.contains("| errors | 0 | 0 | 0 |"), "requests failed in part 2")
            let ratio = text.split(separator: "\n").first { $0.hasPrefix("| streamed tokens/s p50 |") }
            #expect(ratio.map { $0.split(separator: "|").last.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) } != nil } == true)
        }

        /// The proxies part on a tiny load: Hearth and nginx in front of the mock (LiteLLM left out: it takes a minute to
        /// start), and nginx against `hearth up` in front of the real engine; the report has every table and the goals.
        @Test func theProxiesPartRunsOnATinyConfiguration() async throws {
            let directory = try TestEnvironment.temporaryDirectory("bench-proxies-smoke")
            let report = directory + "/proxies.md"
            let run = try await TestProcess(
                name: "hearth-bench",
                executable: try Self.bench,
                arguments: [
                    "--parts", "proxies", "--sequential", "3", "--paced-requests", "1", "--streams", "10", "--stream-ramp", "20", "--stream-seconds",
                    "1",
                    "--seconds", "1", "--engine-requests", "1", "--engine-tokens", "8", "--idle-seconds", "1", "--without-litellm", "--out", report,
                ],
                environment: ["HEARTH_BIN_DIR": (try TestEnvironment.hearthBinary() as NSString).deletingLastPathComponent],
                directory: directory
            )
            let status = await run.waitForExit(timeout: .seconds(280))
            try #require(status == 0, "hearth-bench failed:\n\(run.output.suffix(20).joined(separator: "\n"))\n\(run.errorOutput.suffix(3000))")
            let text = try String(contentsOfFile: report, encoding: .utf8)
            for section in [
                "### Added latency", "### Paced streams", "### Whole answers at the ceiling", "streams held open", "### Where held streams break",
                "### A real engine", "### Goals",
            ] {
                #expect(text.contains(section), "no section '\(section)'")
            }
            // No load lost a request: every cell under an "errors" heading is 0.
            var errorsColumn: Int?
            var checked = 0
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                guard line.hasPrefix("|") else {
                    errorsColumn = nil
                    continue
                }
                if let column = cells.firstIndex(of: "errors") {
                    errorsColumn = column
                } else if let column = errorsColumn, cells.indices.contains(column), !cells[column].hasPrefix("---") {
                    #expect(cells[column] == "0", "\(line)")
                    checked += 1
                }
            }
            #expect(checked >= 8, "the error columns were not found")
            #expect(text.contains("| aggregate tokens/s |"))
            // The memory goal is the gateway's: each process's peak is read on its own.
            #expect(text.contains("extra per open stream: gateway "), "no per-process figure for held streams")
        }

        @Test func helpExplainsAndAMistypedOptionRunsNothing() async throws {
            let directory = try TestEnvironment.temporaryDirectory("bench-options")
            let help = try await TestProcess(name: "bench-help", executable: try Self.bench, arguments: ["--help"], directory: directory)
            #expect(await help.waitForExit(timeout: .seconds(30)) == 0)
            #expect(help.output.first?.hasPrefix("USAGE: hearth-bench") == true)
            #expect(help.output.contains { $0.contains("--replace") })
            // A server mode asked for its help says what the modes are, and starts no server (which would run on).
            let modeHelp = try await TestProcess(
                name: "bench-mode-help",
                executable: try Self.bench,
                arguments: ["mock-upstream", "--help"],
                directory: directory
            )
            #expect(await modeHelp.waitForExit(timeout: .seconds(30)) == 0)
            #expect(modeHelp.output.first?.hasPrefix("USAGE: hearth-bench MODE") == true, "\(modeHelp.output.prefix(3))")
            #expect(!modeHelp.output.contains { $0.hasPrefix("READY") })
            let unknownMode = try await TestProcess(
                name: "bench-mode",
                executable: try Self.bench,
                arguments: ["mock-upstreams"],
                directory: directory
            )
            #expect(await unknownMode.waitForExit(timeout: .seconds(30)) == 1)
            #expect(unknownMode.errorOutput.contains("unknown mode 'mock-upstreams'"), "\(unknownMode.errorOutput)")
            for arguments in [["--roundz", "1"], ["--rounds", "x"], ["--parts", "9"]] {
                let wrong = try await TestProcess(name: "bench-wrong", executable: try Self.bench, arguments: arguments, directory: directory)
                #expect(await wrong.waitForExit(timeout: .seconds(30)) == 64, "\(arguments)")
                #expect(wrong.errorOutput.contains("error: "), "\(arguments)")
            }
            // Nothing ran, so nothing was written.
            #expect(!FileManager.default.fileExists(atPath: directory + "/bench"))
        }
    }
}
