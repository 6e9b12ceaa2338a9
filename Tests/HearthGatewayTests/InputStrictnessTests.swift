import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Junk is refused by name, records name what was meant, and nothing a client sends becomes a metric label.
struct InputStrictnessTests {
    @Test(arguments: [
        ("/api/ledger/entries?after=abc", "after"), ("/api/ledger/entries?limit=99999999999999999999", "limit"),
        ("/api/ledger/entries?after=-1", "after"), ("/api/ledger/entries?limit=0", "limit"), ("/api/ledger/entries?limit=1001", "limit"),
        ("/api/ledger/entries?after=1.5", "after"), ("/api/capacity?context=big", "context"), ("/api/capacity?parallel=0", "parallel"),
        ("/api/catalog?context=-5", "context"),
    ])
    func junkQueryValuesAreRefusedByName(uri: String, parameter: String) async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: uri, method: .get) { response in
                #expect(response.status == .badRequest, "\(uri)")
                let error = decode(response.body)["error"]
                #expect(error?["param"]?.stringValue == parameter)
                #expect(error?["message"]?.stringValue?.contains(parameter) == true)
            }
            try await client.execute(uri: "/api/ledger/entries?after=0&limit=1000", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test func refusedRequestsAreRecordedUnderTheCatalogsIdAndTheirCaller() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            let body: JSONValue = ["model": "smollm2-135m-instruct", "messages": [["role": "user", "content": "hi"]]]
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .notFound)
            }
            let token = try await loginToken(client, IdentityKey.generate())
            try await client.execute(
                uri: "/v1/chat/completions",
                method: .post,
                headers: [.authorization: "Bearer \(token)"],
                body: try json(body)
            ) { #expect($0.status == .notFound) }
        }
        await gateway.settled()
        let rows = try await gateway.database.recentUsage().sorted { $0.startedAt < $1.startedAt }
        #expect(rows.map(\.model) == [DefaultModel.id.rawValue, DefaultModel.id.rawValue])
        #expect(rows.first?.consumer == "anonymous")
        #expect(rows.last?.consumer?.hasPrefix("user:") == true)
        #expect(rows.last?.account != nil)
    }

    /// The Ollama routes refuse what Hearth cannot honour, in Ollama's own error shape.
    @Test func ollamaRoutesRefuseWhatTheyCannotHonourInOllamasShape() async throws {
        let (gateway, transport) = try await makeGateway([nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: [])])
        announce(gateway, announcement(nodeA))
        let cases: [(path: String, body: JSONValue, status: HTTPResponse.Status)] = [
            ("/api/generate", ["model": "no-such-model:q8_0", "prompt": ""], .notFound),
            ("/api/generate", ["model": "no-such-model:q8_0"], .notFound),
            ("/api/generate", ["model": .string(testModel.rawValue), "prompt": "hi", "images": ["AAAA"]], .badRequest),
            ("/api/chat", ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": 123]]], .badRequest),
            ("/api/chat", ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi", "images": ["AAAA"]]]], .badRequest),
            (
                "/api/chat",
                ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]], "tools": [["type": "function"]]],
                .badRequest
            ),
        ]
        try await gateway.application.test(.router) { client in
            for item in cases {
                try await client.execute(uri: item.path, method: .post, body: try json(item.body)) { response in
                    #expect(response.status == item.status, "\(item.path) \(item.body)")
                    let error = decode(response.body)["error"]
                    #expect(error?.stringValue?.isEmpty == false, "not Ollama's shape: \(String(buffer: response.body))")
                }
            }
            // An empty prompt for a model that is served still answers like Ollama's load.
            try await client.execute(uri: "/api/generate", method: .post, body: try json(["model": .string(testModel.rawValue)])) { response in
                #expect(response.status == .ok)
                #expect(decode(response.body)["done_reason"] == "load")
            }
            // So does a chat without messages, Ollama's other way to load a model; for a model not served, a 404.
            for messages in [JSONValue.array([]), nil] {
                var body: JSONValue = ["model": .string(testModel.rawValue)]
                body["messages"] = messages
                try await client.execute(uri: "/api/chat", method: .post, body: try json(body)) { response in
                    #expect(response.status == .ok)
                    let line = decode(response.body)
                    #expect(line["done_reason"] == "load")
                    #expect(line["message"]?["role"] == "assistant")
                }
            }
            try await client.execute(uri: "/api/chat", method: .post, body: try json(["model": "no-such-model:q8_0", "messages": []])) { response in
                #expect(response.status == .notFound)
            }
        }
        #expect(transport.requests.isEmpty, "a refused request reached a node")
    }

    /// Ollama's model management (Open WebUI's "pull a model", `ollama cp`…) is answered with why, in Ollama's shape.
    @Test func ollamasModelManagementIsRefusedWithWhy() async throws {
        let (gateway, _) = try await makeGateway([:])
        announce(gateway, announcement(nodeA))
        try await gateway.application.test(.router) { client in
            for (method, path) in OllamaController.modelManagement {
                let uri = path.replacingOccurrences(of: ":digest", with: "sha256-" + String(repeating: "0", count: 64))
                try await client.execute(uri: uri, method: method, body: try json(["model": .string(testModel.rawValue)])) { response in
                    #expect(response.status == .notImplemented, "\(method) \(uri)")
                    guard method != .head else { return }
                    let error = decode(response.body)["error"]?.stringValue ?? ""
                    #expect(error.contains("catalog") && error.contains("/api/tags"), "\(uri): \(String(buffer: response.body))")
                }
            }
            // Nothing was deleted: the model is still listed.
            try await client.execute(uri: "/api/tags", method: .get) { response in
                #expect(decode(response.body)["models"]?[0]?["name"]?.stringValue == testModel.rawValue)
            }
        }
    }

    /// `GET /v1/models/{model}` (the OpenAI SDKs' `models.retrieve`) answers a served model as the listing shows it, and
    /// a model no node serves as OpenAI does: 404 `model_not_found`.
    @Test func oneModelIsRetrievedAsTheListingShowsIt() async throws {
        let (gateway, _) = try await makeGateway([:])
        announce(gateway, announcement(nodeA))
        try await gateway.application.test(.router) { client in
            let listed = try await client.execute(uri: "/v1/models", method: .get) { decode($0.body)["data"]?[0] }
            #expect(listed?["id"]?.stringValue == testModel.rawValue)
            try await client.execute(uri: "/v1/models/\(testModel.rawValue)", method: .get) { response in
                #expect(response.status == .ok)
                #expect(decode(response.body) == listed)
                #expect(decode(response.body)["object"] == "model")
            }
            for unknown in ["no-such-model:q8_0", "%20", "a%2Fb"] {
                try await client.execute(uri: "/v1/models/\(unknown)", method: .get) { response in
                    #expect(response.status != .ok, "\(unknown)")
                    #expect(decode(response.body)["error"]?["type"] != nil, "\(unknown): \(String(buffer: response.body))")
                }
            }
            try await client.execute(uri: "/v1/models/no-such-model:q8_0", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(decode(response.body)["error"]?["code"] == "model_not_found")
                #expect(decode(response.body)["error"]?["param"] == "model")
            }
        }
    }

    /// A thousand distinct bogus model names, paths and methods add no series to `/metrics`.
    @Test func bogusNamesPathsAndMethodsDoNotBecomeMetricLabels() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.rateLimitPerMinute = 100_000 }
        try await gateway.application.test(.router) { client in
            func series() async throws -> Set<String> {
                try await client.execute(uri: "/metrics", method: .get) { response in
                    Set(
                        String(buffer: response.body).split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
                            String(line.split(separator: " ").first ?? "")
                        }
                    )
                }
            }
            // One of each kind first, so every series the gateway has for them exists before counting.
            try await client.execute(uri: "/nope-warmup", method: .get) { _ in }
            try await client.execute(
                uri: "/v1/chat/completions",
                method: .post,
                body: try json(["model": "warmup", "messages": [["role": "user", "content": "x"]]])
            ) { _ in }
            try await client.execute(uri: "/v1/models", method: .init("BREWWARM")!) { _ in }
            _ = try await series()
            let before = try await series()
            for index in 0..<1000 {
                let body: JSONValue = ["model": .string("bogus-\(index)"), "messages": [["role": "user", "content": "x"]]]
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { #expect($0.status == .notFound) }
                try await client.execute(uri: "/nope-\(index)/x", method: .get) { #expect($0.status == .notFound) }
                try await client.execute(uri: "/v1/models", method: .init("BREW\(index)")!) { _ in }
            }
            let after = try await series()
            #expect(after.subtracting(before).isEmpty, "new series: \(after.subtracting(before).prefix(10))")
            #expect(!after.contains { $0.contains("bogus-") || $0.contains("nope-") || $0.contains("BREW") })
        }
    }
}
