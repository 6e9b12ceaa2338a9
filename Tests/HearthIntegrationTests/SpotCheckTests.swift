import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore

/// Real engines: a node that serves another model (Gemma 3 270M) under SmolLM2's pinned hash, beside two honest nodes;
/// and owners' own servers, checked by their answers' text.
@Suite(.serialized, .timeLimit(.minutes(6)))
struct SpotCheckTests {
    @Test func aNodeServingAnotherModelUnderThePinnedHashIsCaughtAndLosesItsTraffic() async throws {
        let gemma = try TestEnvironment.secondModel()
        try await Cluster.with(label: "cheater") { cluster in
            _ = try await cluster.startNode("honest-1")
            _ = try await cluster.startNode("honest-2")
            let fake = try CheatingEngine.script(in: cluster.directory, llamaServer: try TestEnvironment.llamaServer(), servingInstead: gemma)
            _ = try await cluster.startNode("cheater", extraArguments: ["--no-sandbox"]) { command in
                var command = command
                if let index = command.firstIndex(of: "--llama-server") { command[index + 1] = fake }
                return command
            }
            try await cluster.waitForReadyNodes(3)
            let names = try await cluster.nodeNames()
            let cheater = try #require(names.first { $0.value == "cheater" }?.key)

            // Three at once first, so that every node serves one (a busy node scores below an idle one), again while the
            // cheater has not (on a loaded machine one answer may end before the third request starts); then sampled
            // answers one at a time; each node's first three are checked on another node.
            var servedBy: [String] = []
            for batch in 0..<6 where !servedBy.contains(cheater) {
                servedBy += try await withThrowingTaskGroup(of: String.self) { group in
                    for seed in 0..<3 {
                        group.addTask {
                            let reply = try await HTTP.post(
                                cluster.url + "/v1/chat/completions",
                                json: [
                                    "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Tell me about rivers."]],
                                    "max_tokens": 24, "temperature": 0.7, "seed": .integer(Int64(100 + 3 * batch + seed)), "stream": true,
                                ]
                            )
                            return reply.headers.first(name: "x-hearth-node") ?? ""
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(
                servedBy.contains(cheater),
                "the cheater served none of \(servedBy.count) requests sent three at once: \(servedBy.map { names[$0] ?? $0 })"
            )
            for round in 0..<18 {
                let reply = try await HTTP.post(
                    cluster.url + "/v1/chat/completions",
                    json: [
                        "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Tell me about rivers."]],
                        "max_tokens": 24, "temperature": 0.7, "seed": .integer(Int64(round)), "stream": true,
                    ]
                )
                #expect(reply.status == 200)
                servedBy.append(reply.headers.first(name: "x-hearth-node") ?? "")
                if round == 5 {
                    // A node with no history scores best, so each node has served by now; the checks run after the
                    // answers: wait until the cheater's has concluded.
                    do {
                        _ = try await eventually("the cheater's spot check", within: .seconds(90)) {
                            let standing = try await Self.spotStanding(cluster, cheater)
                            return standing.reputation < 0.8 ? standing : nil
                        }
                    } catch {
                        let log = cluster.gateway.errorOutput.split(separator: "\n").filter { $0.contains("spot check") }
                        Issue.record("\(error); served by \(servedBy.map { names[$0] ?? $0 }); \(log.suffix(8).joined(separator: "\n"))")
                        throw error
                    }
                }
            }
            let caught = try await Self.spotStanding(cluster, cheater)
            #expect(caught.reputation < 0.8 && caught.checked >= 1, "the cheater's reputation: \(caught)")
            for (short, name) in names where name != "cheater" {
                let honest = try await Self.spotStanding(cluster, short)
                #expect(honest.reputation > 0.9, "\(name) was punished: \(honest)")
            }
            // Once caught, its score is below the honest nodes': the answers after that came from them.
            #expect(servedBy.contains(cheater), "the cheater never served, so it was never checked")
            #expect(servedBy.suffix(12).allSatisfy { $0 != cheater }, "\(servedBy.map { names[$0] ?? $0 })")
            let metrics = try await HTTP.get(cluster.url + "/metrics").text
            #expect(metrics.contains("hearth_spot_checks_total{result=\"fail\"}"))
            #expect(metrics.contains("hearth_spot_checks_total{result=\"pass\"}"))
        }
    }

    /// Answers from owners' own servers carry no token ids: they are checked by their text, on a node with a managed
    /// engine (an owner's server never checks). An honest server's answer passes; one that answers word salad under the
    /// pinned blob is caught. The servers are named fakes replaying Ollama's answers (`FakeOpenAIServer`); the checker
    /// is a real llama-server.
    @Test func ownersServersAreCheckedByTheirAnswersText() async throws {
        // Ollama's recorded stream, its seven pieces of text replaced.
        func script(saying pieces: [String]) throws -> FakeOpenAIServer.Script {
            var script = try BackendTests.ollamaScript()
            for (word, piece) in zip(["Paris", " is", " the", " capital", " of", " France", "."], pieces) {
                script.stream = script.stream.replacingOccurrences(of: #""content":"\#(word)""#, with: #""content":"\#(piece)""#)
            }
            return script
        }
        let honestServer = try await FakeOpenAIServer.start(
            try script(saying: ["The capital", " of France", " is Paris,", " a city known", " for the Eiffel", " Tower and the", " Louvre."])
        )
        defer { Task { await honestServer.stop() } }
        let lying = try script(
            saying: ["Velvet sprocket", " under ninety", " marmalade quartz,", " lantern fiddle", " cobalt whistle", " umbrella", " grape."]
        )
        #expect(!lying.stream.contains("Paris"))
        let lyingServer = try await FakeOpenAIServer.start(lying)
        defer { Task { await lyingServer.stop() } }
        try await Cluster.with(label: "backend-spot") { cluster in
            _ = try await cluster.startNode("engine")
            _ = try await cluster.startNode("owner", serving: BackendTests.backend(honestServer.baseURL, name: "smollm2-hearth:latest"))
            _ = try await cluster.startNode("liar", serving: BackendTests.backend(lyingServer.baseURL, name: "smollm2-hearth:latest"))
            try await cluster.waitForReadyNodes(3)
            let names = try await cluster.nodeNames()
            let owner = try #require(names.first { $0.value == "owner" }?.key)
            let liar = try #require(names.first { $0.value == "liar" }?.key)
            // Streams, three at once, until each owner's server has answered some (every node's first three are checked).
            var servedBy: [String] = []
            for _ in 0..<10 where !(servedBy.contains(owner) && servedBy.contains(liar)) {
                servedBy += try await withThrowingTaskGroup(of: String.self) { group in
                    for _ in 0..<3 {
                        group.addTask {
                            let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: BackendTests.streamed(BackendTests.question))
                            return reply.headers.first(name: "x-hearth-node") ?? ""
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            try #require(servedBy.contains(owner) && servedBy.contains(liar), "served by \(servedBy.map { names[$0] ?? $0 })")
            do {
                let caught = try await eventually("the liar's spot check", within: .seconds(90)) {
                    let standing = try await Self.spotStanding(cluster, liar)
                    return standing.reputation < 0.8 ? standing : nil
                }
                #expect(caught.checked >= 1)
                // Judged by its text. The verdict is in the registry before its log line has come through the
                // gateway's output to this process, so the line is waited for (a busy machine once read it too soon).
                _ = try await eventually("the liar's check in the gateway's log, judged per byte", within: .seconds(20)) {
                    let failed = cluster.gateway.errorOutput.split(separator: "\n").filter { $0.contains("spot check failed") }
                    return failed.first { $0.contains("per byte") }
                }
                let passed = try await eventually("the honest owner's spot check", within: .seconds(90)) {
                    let standing = try await Self.spotStanding(cluster, owner)
                    return standing.checked >= 1 ? standing : nil
                }
                #expect(passed.reputation > 0.9, "the honest owner's server was punished: \(passed)")
            } catch {
                let log = cluster.gateway.errorOutput.split(separator: "\n").filter { $0.contains("spot check") }
                Issue.record("\(error); served by \(servedBy.map { names[$0] ?? $0 }); \(log.suffix(8).joined(separator: "\n"))")
                throw error
            }
            // The checker was the managed engine: the owners' servers were never asked to force a grammar.
            for server in [honestServer, lyingServer] {
                #expect(server.requests.allSatisfy { $0.body["grammar"] == nil }, "an owner's server was asked to check")
            }
        }
    }

    /// A node's spot-check reputation and count from `/api/nodes`.
    static func spotStanding(_ cluster: Cluster, _ short: String) async throws -> (reputation: Double, checked: Int) {
        let nodes = try await HTTP.get(cluster.url + "/api/nodes").json.arrayValue ?? []
        let node = nodes.first { $0["nodeID"]?.stringValue?.hasPrefix(short) == true }
        return (node?["spotChecks"]?["reputation"]?.doubleValue ?? 1, Int(node?["spotChecks"]?["checked"]?.integerValue ?? 0))
    }
}
