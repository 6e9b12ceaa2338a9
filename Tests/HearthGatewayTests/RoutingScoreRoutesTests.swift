import Foundation
import HearthCore
import HearthGateway
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The score and ejection as the gateway applies them (FAKE node transport).
struct RoutingScoreRoutesTests {
    static let answer = #"{"choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#

    @Test func aNodeThatFailedIsRoutedToLessAndApiNodesShowsWhy() async throws {
        let (gateway, transport) = try await makeGateway([
            nodeA: .fail, nodeB: .respond(status: 200, contentType: "application/json", chunks: [Self.answer]),
        ])
        try await gateway.application.test(.router) { client in
            // Equal scores: the tie goes to the lower id, so the first request tries A, which fails before a byte.
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 4))
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(chatBody)) { response in
                    #expect(response.status == .ok)
                }
                // The fake node signs no receipt, which costs it reputation: not what this test is about.
                gateway.registry.seedRefusedReceipts(nodeB, count: 0)
            }
            #expect(transport.requests.map(\.node) == [nodeA, nodeB, nodeB], "after its failure A scores below B")
            try await client.execute(uri: "/api/nodes", method: .get) { response in
                let nodes = decode(response.body).arrayValue ?? []
                let a = nodes.first { $0["nodeID"]?.stringValue == nodeA.rawValue }?["routing"]
                let b = nodes.first { $0["nodeID"]?.stringValue == nodeB.rawValue }?["routing"]
                #expect(a?["successRate"]?.doubleValue == 0.9)
                #expect(abs((a?["reliability"]?.doubleValue ?? 0) - 0.81) < 1e-9)
                #expect((a?["score"]?.doubleValue ?? 1) < (b?["score"]?.doubleValue ?? 0))
                #expect(b?["reliability"]?.doubleValue == 1)
                #expect(a?["ejectedForSeconds"] == .null)
            }
        }
    }

    @Test func fiveFailuresInARowTakeANodeOutOfRouting() async throws {
        let (gateway, _) = try await makeGateway([:])
        announce(gateway, announcement(nodeA))
        announce(gateway, announcement(nodeB))
        for _ in 0..<4 { gateway.registry.outcome(on: nodeA, success: false) }
        #expect(gateway.registry.routableNodes().first { $0.id == nodeA }?.ejected == false)
        gateway.registry.outcome(on: nodeA, success: false)
        #expect(gateway.registry.routableNodes().first { $0.id == nodeA }?.ejected == true)
        let routing = try #require(gateway.registry.routing(of: nodeA))
        #expect((routing.ejectedForSeconds ?? 0) > 9 && (routing.ejectedForSeconds ?? 0) <= 10)
        #expect(routing.ejections == 1)
        // B failing as well stays in: two nodes may not both be out.
        for _ in 0..<5 { gateway.registry.outcome(on: nodeB, success: false) }
        #expect(gateway.registry.routableNodes().first { $0.id == nodeB }?.ejected == false)
    }
}
