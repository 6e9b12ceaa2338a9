import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import HearthCore

/// A node in front of its owner's own OpenAI-compatible server (`hearth node --backend`): a real llama-server the test
/// starts as "the owner's", and `FakeOpenAIServer` (a named fake) where a real server cannot show it: one that lies
/// about its file, one that gives no way to check it, and Ollama's answers replayed from fixtures.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BackendTests {
    static let question: JSONValue = [
        "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "What is the capital of France?"]], "max_tokens": 16,
    ]

    static func streamed(_ body: JSONValue) -> JSONValue {
        var body = body
        body["stream"] = true
        body["stream_options"] = ["include_usage": true]
        return body
    }

    /// `hearth node` arguments serving the owner's server at `baseURL` with its model `name` as the default model.
    static func backend(_ baseURL: String, name: String) -> [String] {
        ["--backend", "openai:" + baseURL, "--backend-model", "\(name)=\(DefaultModel.id.rawValue)", "--backend-check-interval", "500ms"]
    }

    /// The gateway's view of the node's model.
    static func reported(_ cluster: Cluster) async throws -> JSONValue? {
        let nodes = try await HTTP.get(cluster.url + "/api/nodes").json.arrayValue ?? []
        return nodes.first?["models"]?.arrayValue?.first { $0["id"]?.stringValue == DefaultModel.id.rawValue }
    }

    static func ledgerEntry(_ cluster: Cluster, _ requestID: String) async throws -> JSONValue {
        try await eventually("the ledger entry of \(requestID)") {
            let entries = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue ?? []
            return entries.first { $0["request_id"]?.stringValue == requestID }
        }
    }

    static func fixture(_ name: String) throws -> String {
        let directory = (URL(fileURLWithPath: #filePath).deletingLastPathComponent().path as NSString).appendingPathComponent("Fixtures/ollama")
        return try String(contentsOfFile: (directory as NSString).appendingPathComponent(name), encoding: .utf8)
    }

    static func ollamaScript() throws -> FakeOpenAIServer.Script {
        FakeOpenAIServer.Script(
            models: ["smollm2-hearth:latest"],
            show: try JSONValue.parse(Array(try fixture("show.json").utf8)),
            answer: try JSONValue.parse(Array(try fixture("chat.json").utf8)),
            stream: try fixture("chat-stream.txt")
        )
    }

    /// The owner's own llama-server, as they would start it, on `port`.
    static func ownersLlamaServer(port: Int, directory: String, extraArguments: [String] = []) async throws -> TestProcess {
        let server = try await TestProcess(
            name: "owners-llama-server",
            executable: try TestEnvironment.llamaServer(),
            arguments: [
                "-m", try TestEnvironment.defaultModel(), "--alias", "my-smollm", "--host", "127.0.0.1", "--port", String(port),
                "-t", "1", "-c", "2048", "-np", "2",
            ] + extraArguments,
            directory: directory
        )
        _ = try await eventually("the owner's llama-server to be healthy", within: .seconds(90), every: .milliseconds(200)) { () -> Bool? in
            guard server.isRunning else { throw TestProcessError("the owner's llama-server exited:\n\(server.errorOutput.suffix(2000))") }
            return (try? await HTTP.get("http://127.0.0.1:\(port)/health"))?.status == 200 ? true : nil
        }
        return server
    }

    @Test func aNodeServesItsOwnersLlamaServerAfterHashingTheFileItNames() async throws {
        // The test polls the gateway while the owner's server goes and comes back: more than a client's 120 a minute.
        try await Cluster.with(label: "backend-llama", gatewayArguments: ["--rate-limit", "3000"]) { cluster in
            let port = try TestEnvironment.freePort()
            var owners = try await Self.ownersLlamaServer(port: port, directory: cluster.directory)
            defer { Task { [owners] in _ = await owners.stop() } }
            let node = try await cluster.startNode("owner", serving: Self.backend("http://127.0.0.1:\(port)/v1", name: "my-smollm"))
            try await cluster.waitForReadyNodes(1)
            #expect(childProcesses(of: node.pid, named: "llama-server").isEmpty, "the node started an engine of its own")

            let model = try #require(try await Self.reported(cluster))
            #expect(model["backend"]?["kind"] == "openai")
            #expect(model["backend"]?["verified"] == true, "\(model)")
            #expect(model["backend"]?["routed"] == true)
            #expect(model["backend"]?["evidence"]?.stringValue?.contains("hashed by this node") == true, "\(model)")
            #expect(model["backend"]?["evidence"]?.stringValue?.contains("/") == false, "the owner's folders are in the public node list")

            // Streamed: real tokens, named by the catalog id, with the engine's usage metered and receipted.
            let stream = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.streamed(Self.question))
            try #require(stream.status == 200, "\(stream.status) \(stream.text.prefix(400))")
            let events = HTTP.events(stream.text)
            #expect(!HTTP.streamedText(stream.text).isEmpty)
            #expect(events.allSatisfy { $0["model"]?.stringValue == DefaultModel.id.rawValue }, "an event named another model")
            let usage = try #require(events.last { $0["usage"] != nil }?["usage"])
            let requestID = try #require(stream.headers.first(name: "x-request-id"))
            let entry = try await Self.ledgerEntry(cluster, requestID)
            #expect(entry["completion_tokens"] == usage["completion_tokens"])
            #expect(entry["prompt_tokens"] == usage["prompt_tokens"])
            #expect((usage["completion_tokens"]?.integerValue ?? 0) > 0)

            // Whole, and through Ollama's API on the gateway.
            let whole = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(whole.status == 200)
            #expect(whole.json["model"]?.stringValue == DefaultModel.id.rawValue)
            #expect(whole.json["choices"]?[0]?["message"]?["content"]?.stringValue?.isEmpty == false)
            let ollama = try await HTTP.post(
                cluster.url + "/api/chat",
                json: [
                    "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "hi"]], "stream": false,
                    "options": ["num_predict": 8],
                ]
            )
            #expect(ollama.status == 200 && ollama.json["message"]?["content"]?.stringValue?.isEmpty == false, "\(ollama.text.prefix(300))")

            // The owner did not say that the server answers embeddings: the node offers none.
            #expect(try await Self.reported(cluster)?["embeddings"] == nil)
            let embeddings = try await HTTP.post(cluster.url + "/v1/embeddings", json: ["model": .string(DefaultModel.id.rawValue), "input": "x"])
            #expect(embeddings.status == 404)

            // The owner's server dies halfway through a stream: with no other node to go on, the client is told (the
            // node ends its stream with its receipt; the gateway does not pass that off as the answer's end).
            var long = Self.streamed(Self.question)
            long["max_tokens"] = 400
            long["ignore_eos"] = true
            let cut = try await ContinuationTests.stream(long, to: "/v1/chat/completions", in: cluster, afterNewlines: 40) { _ in
                { [owners] in owners.send(SIGKILL) }
            }
            #expect(cut.interrupted)
            #expect(cut.body.contains("upstream_failed"), "\(cut.body.suffix(600))")
            #expect(!cut.body.contains("[DONE]"), "\(cut.body.suffix(600))")
            _ = await owners.stop()

            // The owner's server is gone: the node reports it failed and the gateway stops routing; back when it is.
            let failed = try await eventually("the model to be reported failed", within: .seconds(30), every: .milliseconds(250)) {
                () -> JSONValue? in
                let model = try await Self.reported(cluster)
                return model?["state"] == "failed" ? model : nil
            }
            #expect(failed["detail"]?.stringValue?.contains("does not answer") == true, "\(failed)")
            #expect(failed["detail"]?.stringValue?.contains("127.0.0.1") == false, "the owner's address is in the public node list")
            let refused = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(refused.status == 503, "\(refused.status) \(refused.text.prefix(300))")
            owners = try await Self.ownersLlamaServer(port: port, directory: cluster.directory)
            try await cluster.waitForReadyNodes(1, timeout: .seconds(30))
            let again = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(again.status == 200)
            _ = await owners.stop()
        }
    }

    /// The owner's llama-server answers embeddings, and the owner says so (`--embeddings`): the gateway's embeddings,
    /// OpenAI's and Ollama's, are the owner's server's own vectors, one per input, metered by its usage.
    @Test func theOwnersServerAnswersEmbeddingsWhenTheOwnerSaysItDoes() async throws {
        try await Cluster.with(label: "backend-embed") { cluster in
            let port = try TestEnvironment.freePort()
            let owners = try await Self.ownersLlamaServer(
                port: port,
                directory: cluster.directory,
                extraArguments: ["--embeddings", "--pooling", "mean"]
            )
            defer { Task { [owners] in _ = await owners.stop() } }
            _ = try await cluster.startNode("owner", serving: Self.backend("http://127.0.0.1:\(port)/v1", name: "my-smollm") + ["--embeddings"])
            try await cluster.waitForReadyNodes(1)
            #expect(try await Self.reported(cluster)?["embeddings"] == true)

            let inputs = ["The cat sat on the mat.", "Stock markets fell sharply today."]
            var direct: [JSONValue] = []
            var directTokens: Int64 = 0
            for input in inputs {
                let answer = try await HTTP.post("http://127.0.0.1:\(port)/v1/embeddings", json: ["model": "my-smollm", "input": .string(input)])
                try #require(answer.status == 200, "\(answer.text.prefix(300))")
                direct.append(try #require(answer.json["data"]?[0]?["embedding"]))
                directTokens += answer.json["usage"]?["prompt_tokens"]?.integerValue ?? 0
            }
            #expect(directTokens > 0)

            let body: JSONValue = ["model": .string(DefaultModel.id.rawValue), "input": .array(inputs.map { .string($0) })]
            let answer = try await HTTP.post(cluster.url + "/v1/embeddings", json: body)
            try #require(answer.status == 200, "\(answer.status) \(answer.text.prefix(400))")
            #expect(answer.json["model"]?.stringValue == DefaultModel.id.rawValue)
            let data = try #require(answer.json["data"]?.arrayValue)
            #expect(data.count == 2)
            for (index, item) in data.enumerated() {
                #expect(item["index"]?.integerValue == Int64(index))
                #expect(Self.close(item["embedding"], direct[index]), "input \(index) is not the owner's server's vector")
            }
            #expect(answer.json["usage"]?["prompt_tokens"]?.integerValue == directTokens)
            let entry = try await Self.ledgerEntry(cluster, try #require(answer.headers.first(name: "x-request-id")))
            #expect(entry["prompt_tokens"]?.integerValue == directTokens && entry["completion_tokens"] == 0, "\(entry)")

            // Ollama's API on the gateway: the same vectors.
            let ollamaBody: JSONValue = ["model": .string(DefaultModel.id.rawValue), "input": .string(inputs[1])]
            let ollama = try await HTTP.post(cluster.url + "/api/embed", json: ollamaBody)
            try #require(ollama.status == 200, "\(ollama.text.prefix(300))")
            #expect(Self.close(ollama.json["embeddings"]?[0], direct[1]))

            // The same engine still completes.
            let chat = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(chat.status == 200 && chat.json["choices"]?[0]?["message"]?["content"]?.stringValue?.isEmpty == false)
        }
    }

    /// An owner's server that asks for a key (vLLM's `--api-key`): a node without it reports why it serves nothing, and
    /// one given it (`--backend-api-key-file`) serves, sending the key with every request and showing it nowhere.
    @Test func anOwnersServerThatAsksForAKeyGetsItFromTheNodeAndNobodyElseSeesIt() async throws {
        let key = "sk-owner-\(UUID().uuidString)"
        var script = try Self.ollamaScript()
        script.apiKey = key
        let fake = try await FakeOpenAIServer.start(script)
        defer { Task { await fake.stop() } }
        try await Cluster.with(label: "backend-key") { cluster in
            let keyless = try await cluster.startNode("keyless", serving: Self.backend(fake.baseURL, name: "smollm2-hearth:latest"))
            let refused = try await eventually("the keyless node's model to be reported failed") { () -> JSONValue? in
                let model = try await Self.reported(cluster)
                return model?["state"] == "failed" ? model : nil
            }
            #expect(refused["detail"]?.stringValue?.contains("--backend-api-key-file") == true, "\(refused)")
            #expect(fake.refusedForTheKey > 0)
            _ = await keyless.stop()

            let keyFile = (cluster.directory as NSString).appendingPathComponent("owner-key")
            try (key + "\n").write(toFile: keyFile, atomically: true, encoding: .utf8)
            let node = try await cluster.startNode(
                "keyed",
                serving: Self.backend(fake.baseURL, name: "smollm2-hearth:latest") + ["--backend-api-key-file", keyFile]
            )
            try await cluster.waitForReadyNodes(1, timeout: .seconds(30))
            let refusedBefore = fake.refusedForTheKey
            let whole = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(whole.status == 200 && whole.json["choices"]?[0]?["message"]?["content"] == "Paris is the capital of France.")
            let stream = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.streamed(Self.question))
            #expect(HTTP.streamedText(stream.text) == "Paris is the capital of France.")
            #expect(fake.refusedForTheKey == refusedBefore, "a request went to the server without its key")
            // The key is the owner's: not in the public node list, not in the node's log.
            let nodes = try await HTTP.get(cluster.url + "/api/nodes").text
            #expect(!nodes.contains(key))
            #expect(!node.output.joined(separator: "\n").contains(key) && !node.errorOutput.contains(key))
        }
    }

    /// Whether two vectors are the same within float rounding (each written as JSON numbers).
    static func close(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
        guard let a = a?.arrayValue?.compactMap(\.doubleValue), let b = b?.arrayValue?.compactMap(\.doubleValue), a.count == b.count, !a.isEmpty
        else { return false }
        return zip(a, b).allSatisfy { abs($0 - $1) < 1e-5 }
    }
}
