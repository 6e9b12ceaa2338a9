import Foundation
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway

/// A node states a whole answer's length in its head: the gateway answers its client at the body's last byte and reads
/// the receipt that follows in the settlement. The node here is a FAKE transport whose end (the receipt trailer) waits
/// on a gate; the real link is tested with real nodes (`HearthIntegrationTests`).
struct StatedLengthAnswerTests {
    let nodeKey = IdentityKey.generate()

    static let answer =
        #"{"id":"chatcmpl-1","object":"chat.completion","created":42,"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}"#
    /// The answer in two chunks, as a link may deliver it.
    static let chunks = [String(answer.prefix(40)), String(answer.dropFirst(40))]
    static let request: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]]]

    func gateway(_ behaviours: (IdentityKey, GatewayIDBox) -> [NodeID: FakeNodeTransport.Behaviour]) async throws -> (Gateway, FakeNodeTransport) {
        let box = GatewayIDBox()
        let (gateway, transport) = try await makeGateway(behaviours(nodeKey, box))
        box.id = gateway.id
        return (gateway, transport)
    }

    /// The node's honest receipt for `request`.
    static func honest(_ key: IdentityKey, _ box: GatewayIDBox) -> @Sendable (NodeRequest) -> String? {
        { request in ReceiptSettlementTests.token(ReceiptSettlementTests.receipt(for: request, gateway: box.id!, node: key), by: key) }
    }

    @Test func theClientHasTheAnswerBeforeTheNodesReceiptAndTheReceiptIsCreditedAfter() async throws {
        let end = Gate()
        let (gateway, _) = try await gateway { key, box in
            [key.nodeID: .respondStatingLength(end: end, chunks: Self.chunks, receipt: Self.honest(key, box))]
        }
        announce(gateway, announcement(nodeKey.nodeID))
        let fallback = Fallback(opening: end)
        defer { fallback.cancel() }
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(Self.request)) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == Self.answer)
            }
        }
        #expect(!fallback.opened, "the client was answered only after the node's end")
        // The receipt is still to come: nothing credited yet, the settlement waits for it.
        #expect(try await gateway.database.ledger().isEmpty)
        end.open()
        await gateway.settled()
        let ledger = try await gateway.database.ledger()
        #expect(ledger.map(\.completionTokens) == [3])
        #expect(try await gateway.database.receiptRejections().isEmpty)
        #expect(try await gateway.database.recentUsage().first?.status == "ok")
    }

    /// One node whose answer `stated` a length it cannot keep: the client gets the gateway's 502, never a part.
    func brokenOff(stated: Int) async throws {
        let open = Gate()
        open.open()
        let (gateway, _) = try await gateway { key, box in
            [key.nodeID: .respondStatingLength(end: open, chunks: Self.chunks, stated: stated, receipt: Self.honest(key, box))]
        }
        announce(gateway, announcement(nodeKey.nodeID))
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(Self.request)) { response in
                #expect(response.status == .badGateway)
                #expect(String(buffer: response.body).contains("upstream_failed"))
                #expect(!String(buffer: response.body).contains("chatcmpl-1"))
            }
        }
        await gateway.settled()
        #expect(try await gateway.database.recentUsage().map(\.status) == ["upstream_error"])
    }

    @Test func aBodyShortOfItsStatedLengthIsBrokenOff() async throws {
        try await brokenOff(stated: Self.answer.utf8.count + 1)
    }

    @Test func aBodyLongerThanItsStatedLengthIsBrokenOff() async throws {
        try await brokenOff(stated: Self.chunks[0].utf8.count + 1)
    }

    @Test func aStatedLengthPastTheLargestAnswerIsBrokenOffUnread() async throws {
        try await brokenOff(stated: UsageBounds.largestWholeAnswer + 1)
    }

    @Test func aNodeThatNeverEndsItsAnswerEarnsNothingAndHoldsNoSettlement() async throws {
        let end = Gate()
        let (gateway, _) = try await gateway { key, box in
            [key.nodeID: .respondStatingLength(end: end, chunks: Self.chunks, receipt: Self.honest(key, box))]
        }
        let fallback = Fallback(opening: end)
        defer { fallback.cancel() }
        announce(gateway, announcement(nodeKey.nodeID))
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(Self.request)) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body) == Self.answer)
            }
        }
        #expect(!fallback.opened, "the client was answered only after the node's end")
        // Waits `NodeResponseBody.endWait` for the end that never comes, then settles without a receipt.
        await gateway.settled()
        #expect(!fallback.opened, "the settlement waited for the node's end")
        #expect(try await gateway.database.ledger().isEmpty)
        #expect(try await gateway.database.receiptRejections().map(\.reason) == ["missing"])
        #expect(try await gateway.database.recentUsage().first?.completionTokens == 3)
    }
}

/// Opens `gate` after a minute unless cancelled first, and says whether it did: a gateway that waited for a node's end
/// (the gate) would otherwise hold its client, and the test, for ever.
private final class Fallback: Sendable {
    private let fired = Mutex(false)
    private let task = Mutex<Task<Void, any Error>?>(nil)

    init(opening gate: Gate) {
        let started = Task { [self] in
            try await Task.sleep(for: .seconds(60))
            fired.withLock { $0 = true }
            gate.open()
        }
        task.withLock { $0 = started }
    }

    var opened: Bool { fired.withLock { $0 } }

    func cancel() { task.withLock { $0?.cancel() } }
}
