import Foundation
import HearthTesting
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

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
                // The fake node signs no receipt, which costs it reputation: not what this test is about. The
                // receipt is refused by the answer's metering, which runs beside the connection: wait for it first.
                await gateway.settled()
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
                // The requests this gateway has open on each: none once every answer is over.
                #expect(a?["inFlight"] == 0 && b?["inFlight"] == 0, "\(String(describing: a)) \(String(describing: b))")
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

/// The retry budget holds back retries away from nodes that fail while still there, not from nodes that went away.
struct RetryBudgetDispatchTests {
    func dispatcher(first: FakeNodeTransport.Behaviour) -> Dispatcher {
        let registry = NodeRegistry(ttl: .seconds(600))
        registry.upsert(announcement(nodeA))
        registry.upsert(announcement(nodeB))
        let transport = FakeNodeTransport([
            nodeA: first,
            nodeB: .respond(status: 200, contentType: "application/json", chunks: [#"{"choices":[]}"#]),
        ])
        var dispatcher = Dispatcher(registry: registry, transport: transport, maxAttempts: 3, retryAfterSeconds: 1)
        // No retry at all is within this budget.
        dispatcher.retryBudget = RetryBudget(ratio: 0, minimum: 0)
        return dispatcher
    }

    func open(_ dispatcher: Dispatcher) async throws(DispatchFailure) -> OpenedUpstream {
        try await dispatcher.open(endpoint: .chat, model: testModel, body: chatBody, requestID: "r", logger: Logger(label: "test"))
    }

    @Test func aNodeThatFailsWhileThereSpendsTheBudget() async throws {
        do {
            _ = try await open(dispatcher(first: .fail))
            Issue.record("the retry went ahead without budget")
        } catch {
            #expect(error.failure.message.contains("retry budget spent"), "\(error.failure.message)")
        }
    }

    @Test func aNodeWhoseLinkClosedHasItsRequestMovedWithoutBudget() async throws {
        let opened = try await open(dispatcher(first: .linkClosed))
        #expect(opened.node == nodeB)
    }
}
