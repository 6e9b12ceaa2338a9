import Foundation
import HTTPTypes
import HearthCore
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthNode

/// The node's engine routes, without an engine: what they refuse before any model is loaded.
struct EngineProxyTests {
    static let spec = ModelSpec(id: DefaultModel.id, path: "/nonexistent", sha256: DefaultModel.sha256, memoryBytes: 1)

    static func application(_ handle: EngineHandle) -> some ApplicationProtocol {
        let router = Router()
        EngineProxyController(host: EngineHost(engines: [handle], budget: 10), load: NodeLoad(), maxBodyBytes: 4096, receipts: nil)
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
