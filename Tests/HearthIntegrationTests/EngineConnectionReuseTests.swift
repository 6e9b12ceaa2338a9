import HearthTesting
import Testing

@testable import HearthCore

/// A node keeps its connections to its managed llama-server from one request to the next, and starts the engine with
/// an HTTP thread pool that has room for them.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct EngineConnectionReuseTests {
    @Test func aNodeCarriesRequestsOneAfterAnotherOnItsKeptEngineConnection() async throws {
        try await Cluster.with(label: "engine-reuse") { cluster in
            let node = try await cluster.startNode("node-a", extraArguments: ["--parallel", "2"])
            try await cluster.waitForReadyNodes(1)
            let engine = try #require(childProcesses(of: node.pid, named: "llama-server").first)
            let port = try #require(commandLineValue(of: engine, flag: "--port").flatMap(Int.init))
            // Its slots' requests, as many kept idle, and two for the node's looks.
            #expect(commandLineValue(of: engine, flag: "--threads-http") == "6")

            // After each answer, the connections open to the engine (their ports at the node's end). A connection per
            // request is never seen twice; a kept one is seen after each request it carries, while it waits idle for
            // up to a second.
            let chat: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Say a word."]], "max_tokens": 4,
            ]
            var samples: [[Int]] = []
            for index in 0..<8 {
                let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat)
                #expect(reply.status == 200, "request \(index): \(reply.text)")
                samples.append(openConnections(to: port))
            }
            let carried = Dictionary(samples.joined().map { ($0, 1) }, uniquingKeysWith: +).values.max() ?? 0
            #expect(carried >= 4, "no connection to the engine outlived four requests: \(samples)")

            // llama-server closes a connection after a streamed answer: streams close their own, and whole answers
            // after them are answered as before.
            var stream = chat
            stream["stream"] = true
            for _ in 0..<3 {
                let streamed = try await HTTP.post(cluster.url + "/v1/chat/completions", json: stream)
                #expect(streamed.status == 200 && streamed.text.hasSuffix("data: [DONE]\n\n"), "\(streamed.text)")
                #expect(try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat).status == 200)
            }

            // More at once than the engine's slots: those past them close their own connections; all are answered.
            let replies = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        let body: JSONValue = [
                            "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Hi"]],
                            "max_tokens": 4,
                        ]
                        return try await HTTP.post(cluster.url + "/v1/chat/completions", json: body).status
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            #expect(replies == Array(repeating: 200, count: 8))
        }
    }

    /// The node's ports of the established connections to the engine's `port`.
    private func openConnections(to port: Int) -> [Int] {
        tcpSockets().filter { $0.state == "01" && $0.localPort == port }.compactMap(\.remotePort)
    }
}
