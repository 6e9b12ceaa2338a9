import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Partial requests are charged and credited for what the engine did.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AccountingTests {
    /// A caller that sends a long prompt and hangs up after the first token pays for the prompt; the node, told to
    /// stop, ends the stream with a receipt for the work done and is credited for it.
    @Test func aClientThatHangsUpMidStreamPaysForItsPromptAndTheNodeIsCredited() async throws {
        try await Cluster.with(label: "hangup") { cluster in
            _ = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            let prompt = String(repeating: "The quick brown fox jumps over the lazy dog. ", count: 30)
            let body: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": .string(prompt)]], "max_tokens": 1000,
                "ignore_eos": true, "stream": true,
            ]
            var request = HTTPClientRequest(url: cluster.url + "/v1/chat/completions")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            let reading = Task {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
                var text = ""
                for try await chunk in response.body {
                    text += String(buffer: chunk)
                    // Hang up once real tokens flow.
                    if text.components(separatedBy: "\"content\":\"").count > 3 { return response.headers.first(name: "x-request-id") }
                }
                return response.headers.first(name: "x-request-id")
            }
            let requestID = try #require(try await reading.value)

            let database = try GatewayDatabase.open(directory: cluster.directory + "/gateway")
            var row: UsageRecord?
            for _ in 0..<200 where row?.status != "client_closed" {
                row = try await database.recentUsage().first { $0.requestID == requestID }
                if row?.status != "client_closed" { try await Task.sleep(for: .milliseconds(100)) }
            }
            let usage = try #require(row, "no usage row for the request")
            #expect(usage.status == "client_closed")
            #expect(usage.promptTokens > 300, "the prompt was not charged: \(usage)")
            #expect(usage.completionTokens >= 2 && usage.completionTokens < 1000, "\(usage)")

            // The node's receipt says it was cancelled, with the same counts, and it is in the ledger.
            let entry = try #require(try await database.ledger().first { $0.requestID == requestID }, "the node was not credited")
            #expect(entry.promptTokens == usage.promptTokens)
            #expect(entry.completionTokens == usage.completionTokens)
        }
    }
}
