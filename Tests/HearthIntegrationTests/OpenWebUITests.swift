import Foundation
import HearthTesting
import Testing

@testable import HearthCore
@testable import HearthGateway

extension OneAtATime {
    /// Open WebUI (PyPI `open-webui` 0.12), installed once into a private venv in the cache, as a first-class client:
    /// pointed at a real gateway both as an OpenAI and as an Ollama connection, driven through its own HTTP API
    /// (`Clients/open_webui_client.py`). The venv is about 7 GB (torch and its CUDA wheels come with it); the test is
    /// disabled, saying why, when the disk cannot hold it.
    @Suite(.serialized, .timeLimit(.minutes(20)))
    struct OpenWebUITests {
        @Test(.enabled(if: OpenWebUI.installedOrRoomFor, OpenWebUI.noRoom))
        func openWebUIChatsThroughBothConnections() async throws {
            let python = try await OpenWebUI.interpreter()
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/open_webui_client.py").path
            try await Cluster.with(label: "open-webui") { cluster in
                // Embeddings from the node's own model, for Open WebUI's document search.
                _ = try await cluster.startNode("node-a", extraArguments: ["--embeddings"])
                try await cluster.waitForReadyNodes(1)
                let port = try TestEnvironment.freePort()
                let data = cluster.directory + "/open-webui"
                try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
                let server = try await TestProcess(
                    name: "open-webui",
                    executable: OpenWebUI.venv + "/bin/open-webui",
                    arguments: ["serve", "--host", "127.0.0.1", "--port", String(port)],
                    environment: OpenWebUI.environment(data: data, gateway: cluster.url),
                    directory: cluster.directory
                )
                let client: TestProcess
                let status: Int32
                do {
                    client = try await TestProcess(
                        name: "open-webui-client",
                        executable: python,
                        arguments: [script, cluster.url, "http://127.0.0.1:\(port)", DefaultModel.id.rawValue],
                        directory: cluster.directory
                    )
                    status = await client.waitForExit(timeout: .seconds(600))
                } catch {
                    await server.stop()
                    throw error
                }
                await server.stop()
                try #require(
                    status == 0,
                    "the Open WebUI steps failed:\n\(client.output.joined(separator: "\n"))\n\(client.errorOutput.suffix(4000))\nOpen WebUI:\n\(server.errorOutput.suffix(4000))"
                )
                #expect(client.output.last == "OK")
                // The document and the query were embedded by the node, and metered.
                let usage = try await GatewayDatabase.open(directory: cluster.directory + "/gateway").recentUsage(limit: 500)
                let embedded = usage.filter { $0.route == "/v1/embeddings" && $0.status == "ok" }
                #expect(embedded.count >= 2, "\(embedded.count) embeddings requests metered")
                #expect(embedded.allSatisfy { $0.promptTokens > 0 && $0.completionTokens == 0 })
            }
        }
    }
}

/// Open WebUI's private venv in the cache (`open-webui/`), made once and reused.
enum OpenWebUI {
    static let version = "open-webui>=0.12,<0.13"
    static var venv: String { EngineCache.directory + "/open-webui" }
    /// Room for the venv and pip's temporary copies.
    static let neededBytes: UInt64 = 12 << 30

    static var installed: Bool { FileManager.default.isExecutableFile(atPath: venv + "/bin/open-webui") }

    static var installedOrRoomFor: Bool {
        installed || freeBytes(at: EngineCache.directory) >= neededBytes
    }

    static var noRoom: Comment {
        "Open WebUI needs about 12 GB free in \(EngineCache.directory) for its venv (7 GB with torch); only \(freeBytes(at: EngineCache.directory) >> 30) GB are"
    }

    static func freeBytes(at path: String) -> UInt64 {
        var stats = statvfs()
        var folder = path
        while !FileManager.default.fileExists(atPath: folder), folder != "/" { folder = (folder as NSString).deletingLastPathComponent }
        guard statvfs(folder, &stats) == 0 else { return 0 }
        return UInt64(stats.f_bavail) * UInt64(stats.f_frsize)
    }

    /// One installation for the whole run.
    private static let prepared = Task { try await prepare() }

    static func interpreter() async throws -> String { try await prepared.value }

    private static func prepare() async throws -> String {
        let python = venv + "/bin/python"
        if installed, try await run(python, ["-c", "import open_webui, httpx"]) == 0 { return python }
        if !FileManager.default.isExecutableFile(atPath: python) {
            guard try await run("/usr/bin/env", ["python3", "-m", "venv", "--clear", venv]) == 0 else {
                throw TestProcessError("could not create a venv in \(venv) (needs python3-venv)")
            }
        }
        // A few minutes: pip resolves and fetches some 7 GB of wheels from the package index.
        guard try await run(python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", version], timeout: .seconds(1500)) == 0 else {
            throw TestProcessError("could not install \(version) into \(venv) (needs the package index)")
        }
        return python
    }

    private static func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(300)) async throws -> Int32 {
        let process = try await TestProcess(
            name: "open-webui-setup",
            executable: executable,
            arguments: arguments,
            directory: try TestEnvironment.temporaryDirectory("open-webui-setup")
        )
        return await process.waitForExit(timeout: timeout)
    }

    /// Open WebUI's settings for a test: its own data folder, both connections to the gateway, nothing fetched from
    /// the internet (offline mode; embeddings asked of the gateway instead of a local model), no telemetry.
    static func environment(data: String, gateway: String) -> [String: String] {
        [
            "DATA_DIR": data, "WEBUI_SECRET_KEY": "test-only-" + UUID().uuidString,
            "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "RAG_EMBEDDING_ENGINE": "openai", "RAG_OPENAI_API_BASE_URL": gateway + "/v1", "RAG_OPENAI_API_KEY": "unused",
            "RAG_EMBEDDING_MODEL": DefaultModel.id.rawValue,
            "ENABLE_OPENAI_API": "true", "OPENAI_API_BASE_URLS": gateway + "/v1", "OPENAI_API_KEYS": "unused",
            "ENABLE_OLLAMA_API": "true", "OLLAMA_BASE_URLS": gateway,
            "ANONYMIZED_TELEMETRY": "false", "DO_NOT_TRACK": "true", "SCARF_NO_ANALYTICS": "true",
            "ENABLE_VERSION_UPDATE_CHECK": "false",
        ]
    }
}
