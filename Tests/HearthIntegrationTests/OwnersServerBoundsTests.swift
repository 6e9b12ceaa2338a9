import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore

/// What a node takes from the owner's server behind it has bounds (the gateway's side, against a node that lies, is
/// `UntrustedNodeAnswersTests`). Real gateway and node processes; the owner's server is a named fake
/// (`FakeOpenAIServer`), since no real server sends these on purpose.
@Suite(.serialized) struct OwnersServerBoundsTests {
    /// A server whose event never ends: before the bound, the node read on and kept it all (a gigabyte in a trial).
    /// Now it stops at the splitter's bound, drops the server's request, says why in its log, and the client hears
    /// that the answer broke.
    @Test func anEventThatNeverEndsIsCutOffAtItsBound() async throws {
        var script = try BackendTests.ollamaScript()
        script.flood = String(repeating: "a", count: 8 << 10)
        let fake = try await FakeOpenAIServer.start(script)
        defer { Task { await fake.stop() } }
        try await Cluster.with(label: "backend-endless") { cluster in
            let node = try await cluster.startNode("endless", serving: BackendTests.backend(fake.baseURL, name: "smollm2-hearth:latest"))
            try await cluster.waitForReadyNodes(1)
            let before = (resident: residentBytes(of: node.pid), read: Self.bytesRead(by: node.pid))
            let answer = try await Self.ask(cluster, BackendTests.streamed(BackendTests.question))
            #expect(answer.status == 502 || answer.text.contains("upstream_failed"), "\(answer.status) \(answer.text.prefix(300))")
            #expect(answer.text.utf8.count < 4096, "the endless event reached the client")
            // What the node read of it (its sockets' bytes, `/proc/<pid>/io`), once the server has stopped sending:
            // what the server counts as sent includes what its own writer took, which on a busy machine can be all of
            // it, so it is not the measure.
            let sent = try await BackendTests.steadyFlood(fake, "the server to stop sending", wholeFloodEnds: true)
            let read = Self.bytesRead(by: node.pid) - before.read
            #expect(read < 64 << 20, "the node read \(read >> 20) MiB (the server sent \(sent >> 20) MiB)")
            #expect(fake.requests.count == 1, "the server was asked \(fake.requests.count) times")
            let grown = residentBytes(of: node.pid) - before.resident
            #expect(grown < Double(32 << 20), "the node grew by \(Int(grown) >> 20) MiB")
            _ = try await eventually("the node to say why") { () -> Bool? in
                (node.output + [node.errorOutput]).contains { $0.contains("without its end") } ? true : nil
            }
        }
    }

    /// A server that ignores `max_tokens` and streams on: the client gets what it asked for and is charged that, and
    /// the server's request is dropped. Before, the client got everything the server sent (279 MB in 20 s in a
    /// trial) and was charged for all of it. The node drops it itself at the event past the request's bound: left to
    /// the gateway's stop, it read on while that went round (94 MB in a full run beside a CPU hog).
    @Test func aServerThatIgnoresMaxTokensIsCutThere() async throws {
        var script = try BackendTests.ollamaScript()
        script.flood =
            #"data: {"id":"chatcmpl-flood","object":"chat.completion.chunk","created":1,"model":"smollm2-hearth:latest","choices":[{"index":0,"delta":{"content":" on"},"finish_reason":null}]}"#
            + "\n\n"
        let fake = try await FakeOpenAIServer.start(script)
        defer { Task { await fake.stop() } }
        try await Cluster.with(label: "backend-runaway") { cluster in
            let node = try await cluster.startNode("runaway", serving: BackendTests.backend(fake.baseURL, name: "smollm2-hearth:latest"))
            try await cluster.waitForReadyNodes(1)
            let answer = try await Self.ask(cluster, BackendTests.streamed(BackendTests.question))
            #expect(answer.status == 200)
            let events = HTTP.events(answer.text)
            #expect(HTTP.streamedText(answer.text) == String(repeating: " on", count: 16), "\(answer.text.prefix(400))")
            #expect(events.contains { $0["choices"]?[0]?["finish_reason"] == "length" })
            #expect(events.last?["usage"]?["completion_tokens"] == 16)
            let sent = try await BackendTests.steadyFlood(fake, "the server's request to be dropped")
            #expect(sent < 64 << 20, "\(sent >> 20) MiB read from the server")
            let requestID = try #require(answer.headers.first(name: "x-request-id"))
            let entry = try await BackendTests.ledgerEntry(cluster, requestID)
            #expect((entry["completion_tokens"]?.integerValue ?? 99) <= 16, "\(entry)")
            _ = try await eventually("the node to say it dropped the request") { () -> Bool? in
                (node.output + [node.errorOutput]).contains { $0.contains("went past the request's max_tokens") } ? true : nil
            }
        }
    }

    /// Asks as a client that honours a 503's "try again shortly" does: the node checks its owner's server every half
    /// second here, and a check the busy machine let time out takes the model out of the routes until the next one (a
    /// full run once had the question refused, `model_not_ready`, right after the gateway had listed the model).
    static func ask(_ cluster: Cluster, _ body: JSONValue) async throws -> HTTP.Reply {
        try await eventually("the model to be served", within: .seconds(60), every: .milliseconds(250)) { () -> HTTP.Reply? in
            let answer = try await HTTP.post(cluster.url + "/v1/chat/completions", json: body)
            return answer.status == 503 && answer.text.contains("model_not_ready") ? nil : answer
        }
    }

    /// The bytes `pid` has read through system calls (`rchar` of `/proc/<pid>/io`), 0 when it cannot be read.
    static func bytesRead(by pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/io", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("rchar:") })
        else { return 0 }
        return Int(line.dropFirst("rchar:".count).trimmingCharacters(in: .whitespaces)) ?? 0
    }

}
