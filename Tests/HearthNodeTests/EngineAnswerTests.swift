import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthNode

/// A whole answer read from an engine (`EngineAnswer`): its error answers restated, its length bounded, and a
/// cancellation from the gateway closing the engine's connection while it is still generating.
///
/// FAKE engine in each: a loopback Hummingbird server that answers as a llama-server would (a head, then the body,
/// slowly when generating), because a real one cannot be made to answer 64 KiB of error or to hold a body at will.
@Suite(.timeLimit(.minutes(2)))
struct EngineAnswerTests {
    /// Runs `body` with the port of a loopback engine answering `/v1/chat/completions` with `respond`.
    static func withEngine(_ respond: @escaping @Sendable () -> Response, _ body: (_ port: Int) async throws -> Void) async throws {
        let router = Router()
        router.post("/v1/chat/completions") { _, _ in respond() }
        try await LoopbackServer.with(router: router, name: "fake-engine", body)
    }

    static func request(port: Int) -> EngineRequest {
        EngineRequest(
            endpoint: EngineEndpoint(loopbackPort: port),
            path: "/v1/chat/completions",
            headers: ["content-type": "application/json"],
            body: ByteBuffer(string: "{}"),
            deadline: .now() + .seconds(60)
        )
    }

    static func answer(port: Int, limit: Int = UsageBounds.largestWholeAnswer) throws -> EngineAnswer {
        let answer = EngineAnswer(on: MultiThreadedEventLoopGroup.singleton.next(), limit: limit)
        answer.send(request(port: port))
        return answer
    }

    @Test func anErrorAnswerIsKeptUpToItsLimitToBeRestated() async throws {
        let long = String(repeating: "e", count: EngineAnswer.refusalLimit * 2)
        let refusal: @Sendable () -> Response = {
            Response(status: .badRequest, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: long)))
        }
        try await Self.withEngine(refusal) { port in
            let answer = try Self.answer(port: port)
            #expect(try await answer.responseHead().status == .badRequest)
            let body = try await answer.wholeBody()
            #expect(body.readableBytes == EngineAnswer.refusalLimit)
            #expect(String(buffer: body) == String(long.prefix(EngineAnswer.refusalLimit)))
        }
    }

    @Test func anAnswerLongerThanTheLimitFailsInsteadOfGrowingWithoutBound() async throws {
        let long: @Sendable () -> Response = {
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(repeating: 0x20, count: 4096)))
        }
        try await Self.withEngine(long) { port in
            let fits = try Self.answer(port: port, limit: 4096)
            #expect(try await fits.wholeBody().readableBytes == 4096)
            let over = try Self.answer(port: port, limit: 4095)
            #expect(try await over.responseHead().status == .ok)
            await #expect(throws: EngineAnswer.AnswerTooLong.self) { try await over.wholeBody() }
        }
    }

    /// The gateway cancels a whole answer by its request id (its client went away, or the node is handing its work
    /// over): the engine's connection is closed at once, which is what stops a llama-server generating, and the node
    /// answers without the body.
    @Test func aCancelledAnswerClosesTheEnginesConnectionWhileItGenerates() async throws {
        let generating = Atomic<Bool>(false)
        // How the engine's answer ended: `true` when its client went away, `false` when it wrote all of it (30 s).
        let clientLeft = Mutex<Bool?>(nil)
        let slowAnswer: @Sendable () -> Response = {
            Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: ResponseBody { writer in
                    // An engine generating a long answer: a byte now and then until its client goes.
                    generating.store(true, ordering: .relaxed)
                    do {
                        for _ in 0..<600 {
                            try await writer.write(ByteBuffer(string: " "))
                            try await Task.sleep(for: .milliseconds(50))
                        }
                        try await writer.finish(nil)
                        clientLeft.withLock { $0 = false }
                    } catch {
                        clientLeft.withLock { $0 = true }
                        throw error
                    }
                }
            )
        }
        try await Self.withEngine(slowAnswer) { port in
            let handle = EngineHandle(spec: EngineProxyTests.spec, wanted: true)
            handle.update {
                $0.state = .ready
                $0.port = port
            }
            let inFlight = InFlightRequests()
            try await EngineProxyTests.application(handle, inFlight: inFlight).test(.router) { client in
                async let response = client.execute(
                    uri: "/v1/chat/completions",
                    method: .post,
                    headers: [
                        .init("x-hearth-model-sha256")!: DefaultModel.sha256.hex,
                        .init(LinkProtocol.Header.requestID)!: "req-1",
                    ],
                    body: EngineProxyTests.body(DefaultModel.id.rawValue)
                )
                _ = try await eventually("the engine generating and the answer under way") {
                    generating.load(ordering: .relaxed) && inFlight.cancel("req-1") ? true : nil
                }
                let answered = try await response
                // The answer ends without the engine's body, and the engine saw its client go before it had finished.
                #expect(answered.status == .ok)
                #expect(answered.body.readableBytes == 0)
                #expect(try await eventually("the engine's answer to end", within: .seconds(60)) { clientLeft.withLock { $0 } })
            }
        }
    }
}
