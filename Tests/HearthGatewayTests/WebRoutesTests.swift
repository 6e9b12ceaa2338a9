import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// The pages the gateway serves, and the API routes only they use: `/api/activity` and `/api/reciprocity/history`.
/// What the pages do in a browser is tested with Chromium in HearthIntegrationTests (BrowserTests).
struct WebRoutesTests {
    static let pages = ["/": "Chat", "/network": "Network", "/account": "Your account"]

    @Test func pagesAndTheirFilesCarryTheirTypeAndSecurityHeaders() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            for (path, title) in Self.pages {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status == .ok)
                    #expect(response.headers[.contentType] == "text/html; charset=utf-8")
                    #expect(String(buffer: response.body).contains("<title>Hearth · \(title)</title>"))
                    let policy = response.headers[HTTPField.Name("Content-Security-Policy")!] ?? ""
                    // Only the gateway's own scripts run, and the page can talk to nobody else.
                    #expect(
                        policy.contains("script-src 'self'") && policy.contains("connect-src 'self'") && policy.contains("frame-ancestors 'none'")
                    )
                    #expect(!policy.contains("unsafe-inline"))
                    #expect(response.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
                }
            }
            let etag = try await client.execute(uri: "/ui/chat.js", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType] == "text/javascript; charset=utf-8")
                #expect(String(buffer: response.body).contains("/v1/chat/completions"))
                return try #require(response.headers[.eTag])
            }
            try await client.execute(uri: "/ui/chat.js", method: .get, headers: [.ifNoneMatch: etag]) { response in
                #expect(response.status == .notModified)
                #expect(response.body.readableBytes == 0)
            }
            try await client.execute(uri: "/ui/chat.js", method: .get, headers: [.ifNoneMatch: "\"stale\""]) { response in
                #expect(response.status == .ok)
            }
            // The node's dashboard script is not the gateway's to serve; unknown names and path tricks are refused.
            for path in ["/ui/node.js", "/ui/nope.js", "/ui/"] {
                try await client.execute(uri: path, method: .get) { #expect($0.status == .notFound, "\(path)") }
            }
            try await client.execute(uri: "/ui/%2e%2e/Package.swift", method: .get) { #expect($0.status == .badRequest) }
        }
    }

    /// The CSP forbids inline script and style: a page that used them would break in every browser, silently.
    @Test func noPageUsesInlineScriptStyleOrHandlers() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            for path in Self.pages.keys {
                let html = try await client.execute(uri: path, method: .get) { String(buffer: $0.body) }
                let scripts = html.components(separatedBy: "<script").dropFirst()
                #expect(!scripts.isEmpty)
                #expect(scripts.allSatisfy { $0.hasPrefix(" type=\"module\" src=\"/ui/") }, "\(path) has an inline script")
                #expect(!html.contains("style="), "\(path) has a style attribute")
                #expect(html.range(of: #"\son[a-z]+="#, options: .regularExpression) == nil, "\(path) has an inline handler")
            }
        }
    }

    @Test func thePagesLoadWithoutLoginWhileTheAPIAsksForOne() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.requireAuth = true }
        try await gateway.application.test(.router) { client in
            for path in Array(Self.pages.keys) + ["/ui/hearth.css", "/ui/account.js"] {
                try await client.execute(uri: path, method: .get) { #expect($0.status == .ok, "\(path)") }
            }
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/api/activity", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    @Test func activityCountsRequestsTokensAndFirstTokenPerMinute() async throws {
        let broken = ModelID("broken:q8_0")!
        let (gateway, _) = try await makeGateway(
            [
                nodeA: .respond(
                    status: 200,
                    contentType: "text/event-stream",
                    chunks: FakeNodeTransport.chatStream(["a", "b", "c"], promptTokens: 7)
                ),
                nodeB: .fail,
            ]
        )
        announce(gateway, announcement(nodeA))
        announce(gateway, announcement(nodeB, model: broken))
        try await gateway.application.test(.router) { client in
            var stream = chatBody
            stream["stream"] = true
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(stream)) { #expect($0.status == .ok) }
            }
            // A request whose node fails counts as one that failed.
            stream["model"] = .string(broken.rawValue)
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(stream)) { #expect($0.status.code >= 500) }
            _ = try await eventually("all three are metered") { try await gateway.database.recentUsage().count == 3 ? true : nil }
            let activity = try await client.execute(uri: "/api/activity", method: .get) { decode($0.body) }
            #expect(activity["bucket_seconds"] == 60)
            let buckets = try #require(activity["buckets"]?.arrayValue)
            #expect(buckets.count == 60)
            let starts = buckets.compactMap { $0["start"]?.integerValue }
            #expect(zip(starts, starts.dropFirst()).allSatisfy { $1 - $0 == 60 }, "buckets are not consecutive minutes")
            let sum = { (field: String) in buckets.reduce(0) { $0 + ($1[field]?.integerValue ?? 0) } }
            #expect(sum("requests") == 3)
            #expect(sum("failed") == 1)
            #expect(sum("prompt_tokens") == 14)
            #expect(sum("completion_tokens") == 6)
            #expect(buckets.contains { $0["first_token_ms"]?.doubleValue != nil })

            let five = try await client.execute(uri: "/api/activity?minutes=5", method: .get) { decode($0.body) }
            #expect(five["buckets"]?.arrayValue?.count == 5)
            for bad in ["0", "1441", "x"] {
                try await client.execute(uri: "/api/activity?minutes=\(bad)", method: .get) { response in
                    #expect(response.status == .badRequest)
                    #expect(decode(response.body)["error"]?["param"]?.stringValue == "minutes")
                }
            }
        }
    }

    @Test func anAccountSeesItsOwnHistoryAndNoOneElses() async throws {
        let (gateway, _) = try await makeGateway(
            [nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: FakeNodeTransport.chatStream(["a", "b", "c"], promptTokens: 7))]
        )
        announce(gateway, announcement(nodeA))
        let alice = IdentityKey.generate()
        let bob = IdentityKey.generate()
        try await gateway.application.test(.router) { client in
            let aliceToken = try await loginToken(client, alice)
            let bobToken = try await loginToken(client, bob)
            var stream = chatBody
            stream["stream"] = true
            try await client.execute(
                uri: "/v1/chat/completions",
                method: .post,
                headers: [.authorization: "Bearer \(aliceToken)"],
                body: try json(stream)
            ) { #expect($0.status == .ok) }
            _ = try await eventually("the chat is metered") { try await gateway.database.recentUsage().count == 1 ? true : nil }

            let consumed = { (token: String, query: String) in
                try await client.execute(uri: "/api/reciprocity/history\(query)", method: .get, headers: [.authorization: "Bearer \(token)"]) {
                    response -> (Int, Int, Int64?) in
                    let body = decode(response.body)
                    let buckets = body["buckets"]?.arrayValue ?? []
                    return (
                        buckets.count, buckets.reduce(0) { $0 + Int($1["consumed_tokens"]?.integerValue ?? 0) }, body["bucket_seconds"]?.integerValue
                    )
                }
            }
            let month = try await consumed(aliceToken, "")
            #expect(month.0 == 30 && month.1 == 10 && month.2 == 86400)
            let day = try await consumed(aliceToken, "?days=1")
            #expect(day.0 == 24 && day.1 == 10 && day.2 == 3600)
            #expect(try await consumed(bobToken, "").1 == 0)
            try await client.execute(uri: "/api/reciprocity/history", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(decode(response.body)["error"]?["code"]?.stringValue == "login_required")
            }
        }
    }
}
