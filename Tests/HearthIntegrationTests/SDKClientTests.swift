import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// The official `openai` and `ollama` Python packages, installed into a private venv, against a real gateway.
@Suite(.serialized, .timeLimit(.minutes(10)))
struct SDKClientTests {
    @Test func officialOpenAIAndOllamaClientsHoldAConversation() async throws {
        let python = try await PythonClients.interpreter()
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/sdk_conversation.py").path
        try await Cluster.with(label: "sdk") { cluster in
            _ = try await cluster.startNode("node-a", extraArguments: ["--embeddings"])
            try await cluster.waitForReadyNodes(1)
            let run = try await TestProcess(
                name: "sdk-conversation",
                executable: python,
                arguments: [script, cluster.url, DefaultModel.id.rawValue],
                directory: cluster.directory
            )
            let status = await run.waitForExit(timeout: .seconds(180))
            #expect(status == 0, "the client script failed:\n\(run.output.joined(separator: "\n"))\n\(run.errorOutput.suffix(4000))")
            #expect(run.output.last == "OK")
        }
    }
}

/// A venv with the `openai` and `ollama` packages, `cbor2` and `cryptography` for the independent ledger check, and
/// `selenium` for the browser tests, made once in the cache and reused.
enum PythonClients {
    /// One setup for the whole test run, however many suites ask at once.
    private static let prepared = Task { try await prepare() }

    static func interpreter() async throws -> String {
        try await prepared.value
    }

    private static func prepare() async throws -> String {
        let venv = EngineCache.directory + "/test-venv"
        let python = venv + "/bin/python"
        if FileManager.default.isExecutableFile(atPath: python),
            try await run(python, ["-c", "import openai, ollama, cbor2, cryptography, selenium"]) == 0
        {
            return python
        }
        let directory = try TestEnvironment.temporaryDirectory("venv")
        // Reuse a venv missing only some packages; make one when there is none.
        var made = FileManager.default.isExecutableFile(atPath: python)
        if !made { made = try await run("/usr/bin/env", ["python3", "-m", "venv", "--clear", venv], in: directory) == 0 }
        guard made,
            try await run(
                python,
                ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "openai", "ollama", "cbor2", "cryptography", "selenium"],
                in: directory
            ) == 0
        else {
            throw TestProcessError("could not create the Python client venv in \(venv) (needs python3-venv and the package index)")
        }
        return python
    }

    private static func run(_ executable: String, _ arguments: [String], in directory: String? = nil) async throws -> Int32 {
        let process = try await TestProcess(
            name: "python-setup",
            executable: executable,
            arguments: arguments,
            directory: try directory ?? TestEnvironment.temporaryDirectory("venv")
        )
        return await process.waitForExit(timeout: .seconds(300))
    }
}
