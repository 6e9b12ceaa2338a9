import HearthTesting
import Testing

@testable import HearthCore

/// An owner's server that stops between two of the node's looks. Real gateway and node processes; the owner's server
/// is a named fake (`FakeOpenAIServer`), which the test can stop at a moment of its choosing.
struct OwnersServerStoppedTests {
    /// `hearth node` arguments serving the fake server at `baseURL`, looked at every ten minutes: only the requests can
    /// tell the node that it stopped.
    static func lookingRarely(at baseURL: String) -> [String] {
        ["--backend", "openai:" + baseURL, "--backend-model", "smollm2-hearth:latest=\(DefaultModel.id.rawValue)", "--backend-check-interval", "10m"]
    }

    /// Waits (up to a minute, far short of the next regular look) for the model to be reported failed for refusing
    /// connections.
    static func expectReportedRefusing(_ cluster: Cluster) async throws {
        let failed = try await eventually("the model reported failed after the refused requests", within: .seconds(60)) {
            let model = try await BackendTests.reported(cluster)
            return model?["state"] == "failed" ? model : nil
        }
        #expect(failed["detail"] == "the owner's server does not answer: it refuses connections", "\(failed)")
    }

    /// The node looks every ten minutes here, so nothing but the requests can tell it that the server stopped. A
    /// request sent to the stopped server fails at once: the node used to try to connect again for its whole connect
    /// timeout (30 s, beyond the 15 s each request is given here). The refusal has the node look at once, and the model
    /// is reported failed, saying why, long before the next regular look.
    @Test func aRequestToAStoppedServerFailsAtOnceAndHasTheNodeLookAgain() async throws {
        let fake = try await FakeOpenAIServer.start(try BackendTests.ollamaScript())
        let baseURL = fake.baseURL
        defer { Task { await fake.stop() } }
        try await Cluster.with(label: "backend-stopped") { cluster in
            _ = try await cluster.startNode("stopped", serving: Self.lookingRarely(at: baseURL))
            try await cluster.waitForReadyNodes(1)
            let answered = try await HTTP.post(cluster.url + "/v1/chat/completions", json: BackendTests.question)
            try #require(answered.status == 200, "\(answered.status) \(answered.text.prefix(300))")

            await fake.stop()
            for body in [BackendTests.question, BackendTests.streamed(BackendTests.question)] {
                let refused = try await HTTP.post(cluster.url + "/v1/chat/completions", json: body, timeout: .seconds(15))
                #expect(refused.status == 502 || refused.status == 503, "\(refused.status) \(refused.text.prefix(300))")
                #expect(refused.json["error"]?["message"] != nil, "\(refused.text.prefix(300))")
                // Refused by the node (not yet by the gateway): the client is told the node's code.
                if refused.status == 502 {
                    #expect(refused.json["error"]?["message"]?.stringValue?.contains("HTTP 502 engine_failed") == true, "\(refused.text.prefix(300))")
                }
            }
            try await Self.expectReportedRefusing(cluster)
            // Off the routes: the next request is refused by the gateway, without a node to try.
            let unrouted = try await HTTP.post(cluster.url + "/v1/chat/completions", json: BackendTests.question, timeout: .seconds(15))
            #expect(unrouted.status == 503 || unrouted.status == 404, "\(unrouted.status) \(unrouted.text.prefix(300))")
        }
    }

    /// The same for embeddings (`--embeddings`), which the node asks for through its own call (`EmbeddingCall`).
    @Test func anEmbeddingsRequestToAStoppedServerFailsAtOnceAndHasTheNodeLookAgain() async throws {
        var script = try BackendTests.ollamaScript()
        script.embedding = ["object": "list", "data": [["object": "embedding", "index": 0, "embedding": [0.25, -0.5, 1]]]]
        let fake = try await FakeOpenAIServer.start(script)
        let baseURL = fake.baseURL
        defer { Task { await fake.stop() } }
        try await Cluster.with(label: "backend-stopped-embed") { cluster in
            _ = try await cluster.startNode("stopped", serving: Self.lookingRarely(at: baseURL) + ["--embeddings"])
            try await cluster.waitForReadyNodes(1)
            let body: JSONValue = ["model": .string(DefaultModel.id.rawValue), "input": "The cat sat on the mat."]
            let answered = try await HTTP.post(cluster.url + "/v1/embeddings", json: body)
            try #require(answered.status == 200, "\(answered.status) \(answered.text.prefix(300))")

            await fake.stop()
            let refused = try await HTTP.post(cluster.url + "/v1/embeddings", json: body, timeout: .seconds(15))
            #expect(refused.status == 502 || refused.status == 503, "\(refused.status) \(refused.text.prefix(300))")
            try await Self.expectReportedRefusing(cluster)
        }
    }
}
