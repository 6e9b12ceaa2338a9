import Foundation
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// When a spot check runs (FAKE node transport; the checks' verdicts on real engines are SpotCheckTests in
/// HearthIntegrationTests).
struct SpotCheckerTests {
    /// A new node's first answer is checked even when the network's only checker cannot take the check at that moment
    /// (busy, or loading): the check waits for it. Before, it was recorded inconclusive ("No other node … is ready") and
    /// never asked again, so on a small, busy network a new node's first answers went unchecked.
    @Test func aCheckWaitsForACheckerThatIsNotFreeYet() async throws {
        let pieces = (0..<12).map { (text: " w\($0)", token: Int32(10 + $0)) }
        let answer =
            FakeNodeTransport.markedChatEvents(pieces, first: true) + [
                #"data: {"id":"chatcmpl-1","created":42,"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":"chat.completion.chunk"}"#
                    + "\n\n", "data: [DONE]\n\n",
            ]
        let (gateway, transport) = try await makeGateway([
            nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: answer),
            nodeB: .respond(status: 200, contentType: "application/json", chunks: [#"{"choices":[]}"#]),
        ]) { $0.spotChecks.share = 0 }
        announce(gateway, announcement(nodeA))
        announce(gateway, announcement(nodeB, state: .loading))
        var body = chatBody
        body["stream"] = true
        body["max_tokens"] = 12
        let asked = body
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(asked)) { response in
                #expect(response.status == .ok)
            }
            func metrics() async throws -> String {
                try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            }
            // The check found no free checker, and waits (once or more by the time this looks).
            _ = try await eventually("the check to wait for a checker") { () -> Bool? in
                let line = try await metrics().split(separator: "\n").first { $0.hasPrefix("hearth_spot_check_waits_total ") }
                return (line.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0) >= 1 ? true : nil
            }
            #expect(!transport.requests.contains { $0.node == nodeB })
            announce(gateway, announcement(nodeB))
            _ = try await eventually("the checker to be asked", within: .seconds(30)) { () -> Bool? in
                transport.requests.contains { $0.node == nodeB } ? true : nil
            }
        }
    }
}
