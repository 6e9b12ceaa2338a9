import Foundation
import HTTPTypes
import HearthTesting
import HearthWeb
import HummingbirdCore
import NIOCore
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway

/// A client that resets its connection while its answer is still being made, before the gateway could write the
/// response's head: the node is asked to stop, the work it did is metered (`client_closed`), and the node's slot is
/// given back, though no response could be written.
@Suite(.timeLimit(.minutes(4)))
struct ClientGoneTests {
    static let body = #"{"model":"\#(testModel.rawValue)","messages":[{"role":"user","content":"hi"}]}"#
    /// A loaded machine early in a full run can take longer than the 10 s header timeout to read a request sent at
    /// once (a full run beside a CPU hog timed out waiting for the request at the node): not what these tests test.
    static let patientHeaders: @Sendable (inout GatewayConfiguration) -> Void = { $0.headerTimeout = .seconds(120) }

    @Test func aClientThatResetsBeforeItsWholeAnswerIsReadyIsStillMeteredAndFreesTheNode() async throws {
        let answer =
            #"{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}],"#
            + #""usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#
        let (row, transport) = try await resetBeforeTheHead(body: Self.body, contentType: "application/json", chunks: [answer])
        #expect(row.status == "client_closed", "\(row)")
        #expect(row.completionTokens == 1, "the node's work was not metered: \(row)")
        // The node is asked to stop an answer nobody waits for (`ClientWatch`); what it made is metered all the same.
        #expect(transport.cancelled == [row.requestID], "the node was not asked to stop")
    }

    @Test func aClientThatResetsBeforeItsStreamStartsHasItsNodeStoppedAndIsMetered() async throws {
        let events = FakeNodeTransport.chatStream(["hel", "lo"])
        let streamed = String(Self.body.dropLast()) + #","stream":true}"#
        let (row, transport) = try await resetBeforeTheHead(body: streamed, contentType: "text/event-stream", chunks: events)
        #expect(row.status == "client_closed", "\(row)")
        // Asked while the gateway waited for its first event (`ClientWatch`), and again when the head could not be
        // written: the node stops once.
        #expect(Set(transport.cancelled) == [row.requestID], "the node was not asked to stop")
    }

    @Test func aBodyDroppedUnrunPaysWhatItOwesOnceAndABodyThatRanOwesNothing() async throws {
        let paid = Atomic<Int>(0)
        let pay: @Sendable () -> Void = { paid.add(1, ordering: .relaxed) }
        do {
            let dropped = ResponseBody.owing(ifNeverRun: pay) { _ in }
            #expect(dropped.contentLength == nil)
        }
        #expect(paid.load(ordering: .relaxed) == 1)

        let written = Written()
        do {
            let ran = ResponseBody.owing(contentLength: 2, ifNeverRun: pay) { writer in
                try await writer.write(ByteBuffer(string: "ok"))
            }
            #expect(ran.contentLength == 2)
            try await ran.write(CollectingWriter(written: written))
        }
        #expect(written.parts.withLock { $0 } == ["ok"])
        #expect(paid.load(ordering: .relaxed) == 1, "a body that ran paid its debt too")
    }

    /// Sends `body`; the node answers with `chunks` only once the client has reset its connection and the gateway has
    /// seen it go. Returns the request's usage row once written, and the node's count of requests back at zero.
    /// A node whose engine never answers (an owner's server that hangs): the client gives up, by a reset or by closing
    /// its side, and the gateway stops waiting: the node's slot is given back (on a real link its stream is reset, and
    /// the node drops the engine's request), no other node is asked, and the request is metered `client_closed`.
    @Test(arguments: [true, false])
    func aClientThatGivesUpOnAHungNodeFreesItsSlot(reset: Bool) async throws {
        let transport = FakeNodeTransport([nodeA: .hang, nodeB: .respond(status: 200, contentType: "application/json", chunks: ["{}"])])
        try await withLiveGateway(transport: transport, configure: Self.patientHeaders) { gateway, port in
            announce(gateway, announcement(nodeA, slots: 4))
            announce(gateway, announcement(nodeB, slots: 1))
            let client = try await RawConnection.connect(
                port: port,
                sending: "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(Self.body.utf8.count)\r\n\r\n\(Self.body)"
            )
            _ = try await eventually("the request at the node", within: .seconds(60)) { gateway.registry.requestsInFlight() == 1 ? true : nil }
            if reset { try await client.reset() } else { client.close() }
            _ = try await eventually("the node's slot given back") { gateway.registry.requestsInFlight() == 0 ? true : nil }
            let row = try await eventually("the request's usage row") {
                try await gateway.database.recentUsage().first { $0.route.contains("chat") }
            }
            #expect(row.status == "client_closed", "\(row)")
        }
        #expect(transport.abandoned == 1)
        #expect(transport.requests.map(\.node) == [nodeA], "another node was asked for a client that had gone")
    }

    private func resetBeforeTheHead(body: String, contentType: String, chunks: [String]) async throws -> (UsageRecord, FakeNodeTransport) {
        let gate = Gate()
        let transport = FakeNodeTransport([nodeA: .respondOnceOpen(gate, status: 200, contentType: contentType, chunks: chunks)])
        var found: UsageRecord?
        try await withLiveGateway(transport: transport, configure: Self.patientHeaders) { gateway, port in
            // Opened on every way out: the gateway's shutdown waits for the request held at the node.
            defer { gate.open() }
            announce(gateway, announcement(nodeA))
            // Sent as it connects: a send of its own waited for this task, which early in a full run came back later
            // than the gateway's 10 s header timeout.
            let client = try await RawConnection.connect(
                port: port,
                sending: "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
            )
            _ = try await eventually("the request at the node") { gateway.registry.requestsInFlight() == 1 ? true : nil }
            try await client.reset()
            _ = try await eventually("the gateway to see the client go") { gateway.connections.count(for: "127.0.0.1") == 0 ? true : nil }
            gate.open()
            found = try await eventually("the request's usage row") {
                try await gateway.database.recentUsage().first { $0.route.contains("chat") }
            }
            _ = try await eventually("the node's slot given back") { gateway.registry.requestsInFlight() == 0 ? true : nil }
        }
        return (try #require(found), transport)
    }
}

private final class Written: Sendable {
    let parts = Mutex<[String]>([])
}

/// A body writer that keeps what is written, for running a `ResponseBody` without a connection.
private struct CollectingWriter: ResponseBodyWriter {
    let written: Written

    mutating func write(_ buffer: ByteBuffer) async throws {
        written.parts.withLock { $0.append(String(buffer: buffer)) }
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
}
