import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthNode

/// The node's engine routes, without an engine: what they refuse before any model is loaded.
struct EngineProxyTests {
    static let spec = ModelSpec(id: DefaultModel.id, path: "/nonexistent", sha256: DefaultModel.sha256, memoryBytes: 1)

    static func application(_ handle: EngineHandle, inFlight: InFlightRequests = InFlightRequests()) -> some ApplicationProtocol {
        let router = Router()
        EngineProxyController(
            host: EngineHost(engines: [handle], budget: 10),
            load: NodeLoad(),
            maxBodyBytes: 4096,
            receipts: nil,
            inFlight: inFlight
        )
        .addRoutes(to: router)
        return Application(router: router)
    }

    static func body(_ model: String) -> ByteBuffer {
        ByteBuffer(string: #"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}]}"#)
    }

    @Test func refusesARequestForAnotherFileThanTheOneTheGatewayPinned() async throws {
        let handle = EngineHandle(spec: Self.spec, wanted: false)
        try await Self.application(handle).test(.router) { client in
            let other = String(repeating: "e", count: 64)
            try await client.execute(
                uri: "/v1/chat/completions",
                method: .post,
                headers: [.init("x-hearth-model-sha256")!: other],
                body: Self.body(DefaultModel.id.rawValue)
            ) { response in
                #expect(response.status == .serviceUnavailable)
                let text = String(buffer: response.body)
                #expect(text.contains("model_hash_mismatch") && text.contains(other), "\(text)")
            }
            // Nothing was loaded for it.
            #expect(!handle.wanted)
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: Self.body("rogue:q8_0")) { response in
                #expect(response.status == .notFound)
                #expect(String(buffer: response.body).contains("model_not_found"))
            }
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "{")) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    /// A request for a pool this node does not head (now) is a 503 the gateway retries elsewhere, never a 404 to the
    /// client, and never served by the node's own engine for the same model.
    @Test func aRequestForAPoolItDoesNotHeadIsRetriable() async throws {
        let handle = EngineHandle(spec: Self.spec, wanted: false)
        try await Self.application(handle).test(.router) { client in
            for pool in [PoolID.random().rawValue, "not-a-pool"] {
                try await client.execute(
                    uri: "/v1/chat/completions",
                    method: .post,
                    headers: [.init(LinkProtocol.Header.pool)!: pool],
                    body: Self.body(DefaultModel.id.rawValue)
                ) { response in
                    #expect(response.status == .serviceUnavailable)
                    #expect(String(buffer: response.body).contains("pool_head_gone"))
                }
            }
            #expect(!handle.wanted, "the node's own engine was loaded for a pool request")
        }
    }

    @Test func aFileRefusedOnceIsRefusedAtOnce() async throws {
        let handle = EngineHandle(spec: Self.spec, wanted: true)
        handle.failPermanently("sha256 differs")
        try await Self.application(handle).test(.router) { client in
            try await client.execute(
                uri: "/v1/chat/completions",
                method: .post,
                headers: [.init("x-hearth-model-sha256")!: DefaultModel.sha256.hex],
                body: Self.body(DefaultModel.id.rawValue)
            ) { response in
                #expect(response.status == .serviceUnavailable)
                #expect(String(buffer: response.body).contains("model_refused"))
            }
        }
    }
}

/// llama-server's error answers, as llama.cpp b11434 sends them (recorded from the pinned build), and what the node
/// makes of them for the gateway.
struct EngineRefusalTests {
    @Test(arguments: [
        (
            500,
            #"{"error":{"code":500,"message":"Failed to parse tools: Expected 'tools' to be an array, got \"notalist\"; tools = \"notalist\"","type":"server_error"}}"#
        ),
        (
            500,
            #"{"error":{"code":500,"message":"image input is not supported - hint: if this is unexpected, you may need to provide the mmproj","type":"server_error"}}"#
        ),
        (
            400,
            #"{"error":{"code":400,"message":"Field 'top_k': [json.exception.type_error.302] type must be number, but is string","type":"invalid_request_error"}}"#
        ),
        (
            400,
            #"{"error":{"code":400,"message":"response_format type must be one of \"text\" or \"json_object\", but got: bogus","type":"invalid_request_error"}}"#
        ),
    ])
    func theClientsMistakesBecome400WithTheEnginesReason(status: Int, body: String) {
        let failure = EngineRefusal.failure(status: status, body: ByteBuffer(string: body))
        #expect(failure.status == 400)
        #expect(failure.code == "engine_rejected")
        #expect(body.contains(failure.message.prefix(20)))
    }

    /// llama-server's answer to a prompt longer than its context (b11434), said as OpenAI says it so that clients that
    /// trim a conversation on `context_length_exceeded` (or on either wording) do.
    @Test func aPromptLongerThanTheContextIsOpenAIsContextLengthExceeded() {
        let failure = EngineRefusal.failure(
            status: 400,
            body: ByteBuffer(
                string: #"{"error":{"code":400,"message":"request (3031 tokens) exceeds the available context size (512 tokens), "#
                    + #"try increasing it","type":"exceed_context_size_error","n_prompt_tokens":3031,"n_ctx":512}}"#
            )
        )
        #expect(failure.status == 400)
        #expect(failure.code == "context_length_exceeded")
        #expect(failure.message.hasPrefix("This model's maximum context length is 512 tokens"))
        #expect(failure.message.contains("3031"))
        #expect(failure.message.contains("exceeds the available context size"))
        // Without the counts, llama-server's own words stay.
        let bare = EngineRefusal.failure(
            status: 400,
            body: ByteBuffer(string: #"{"error":{"code":400,"message":"too long","type":"exceed_context_size_error"}}"#)
        )
        #expect(bare.code == "context_length_exceeded")
        #expect(bare.message == "too long")
    }

    @Test func theEnginesOwnFailuresStayServerErrorsSoTheGatewayTriesElsewhere() {
        let crashed = EngineRefusal.failure(
            status: 500,
            body: ByteBuffer(string: #"{"error":{"code":500,"message":"llama_decode failed","type":"server_error"}}"#)
        )
        #expect(crashed.status == 502)
        let loading = EngineRefusal.failure(
            status: 503,
            body: ByteBuffer(string: #"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#)
        )
        #expect(loading.status == 503)
        let garbage = EngineRefusal.failure(status: 500, body: ByteBuffer(string: "<html>oops</html>"))
        #expect(garbage.status == 502)
    }
}

/// The node's wait for an engine's answer has no read timeout: an answer that takes longer than the 90 s
/// `HTTPClient.shared` allows (a long non-streamed generation, or a request queued behind others) still arrives.
@Suite(.timeLimit(.minutes(4)))
struct SlowEngineTests {
    @Test func aNonStreamedAnswerThatTakesLongerThanNinetySecondsArrives() async throws {
        // FAKE engine: a loopback server that holds its answer for 95 s, as a llama-server generating a long
        // non-streamed answer does; a real one cannot be made that slow on purpose. What is under test is the node's
        // side of the wait.
        let router = Router()
        router.post("/v1/chat/completions") { _, _ in
            try await Task.sleep(for: .seconds(95))
            return Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        string: #"{"choices":[{"message":{"role":"assistant","content":"late"}}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#
                    )
                )
            )
        }
        try await LoopbackServer.with(router: router, name: "slow-engine") { port in
            let handle = EngineHandle(spec: EngineProxyTests.spec, wanted: true)
            handle.update {
                $0.state = .ready
                $0.port = port
            }
            let started = ContinuousClock.now
            try await EngineProxyTests.application(handle).test(.router) { client in
                try await client.execute(
                    uri: "/v1/chat/completions",
                    method: .post,
                    headers: [.init("x-hearth-model-sha256")!: DefaultModel.sha256.hex],
                    body: EngineProxyTests.body(DefaultModel.id.rawValue)
                ) { response in
                    #expect(response.status == .ok, "\(String(buffer: response.body))")
                    #expect(String(buffer: response.body).contains("late"))
                }
            }
            #expect(ContinuousClock.now - started >= .seconds(95))
        }
    }
}
