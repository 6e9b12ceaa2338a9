import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Token quotas with a named fake node that reports 7 prompt + 3 completion tokens per answer.
struct QuotaTests {
    let chat: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]], "stream": true]

    func gateway(floor: Double) async throws -> Gateway {
        let (gateway, _) = try await makeGateway(
            [nodeA: .respond(status: 200, contentType: "text/event-stream", chunks: FakeNodeTransport.chatStream(["a", "b", "c"], promptTokens: 7))]
        ) { $0.reciprocity = Reciprocity(floorTokensPerHour: floor, ceilingTokensPerHour: 100_000) }
        announce(gateway, announcement(nodeA))
        return gateway
    }

    /// Sends a streamed chat and waits until it is metered; returns the status and headers.
    func send(
        _ client: some TestClientProtocol,
        _ gateway: Gateway,
        headers: HTTPFields = [:]
    ) async throws -> (HTTPResponse.Status, HTTPFields, JSONValue) {
        let result = try await client.execute(uri: "/v1/chat/completions", method: .post, headers: headers, body: try json(chat)) {
            ($0.status, $0.headers, decode($0.body))
        }
        // The next request's quota counts this one's tokens once it is settled.
        await gateway.settled()
        return result
    }

    @Test func anonymousCallersGetTheFloorThenA429ThatSaysHowToEarnMore() async throws {
        let gateway = try await gateway(floor: 25)
        try await gateway.application.test(.router) { client in
            for _ in 0..<3 { #expect(try await send(client, gateway).0 == .ok) }  // 25 → 15 → 5 → -5 tokens left
            let (status, headers, body) = try await send(client, gateway)
            #expect(status == .tooManyRequests)
            #expect(Int(headers[.retryAfter] ?? "") ?? 0 >= 1)
            #expect(headers[HTTPField.Name("X-RateLimit-Limit-Tokens")!] == "25")
            #expect(headers[HTTPField.Name("X-RateLimit-Remaining-Tokens")!] == "0")
            #expect(headers[HTTPField.Name("X-Hearth-Standing")!] == "0")
            #expect(body["error"]?["code"]?.stringValue == "token_quota_exceeded")
            #expect(body["error"]?["type"]?.stringValue == "rate_limit_error")
            #expect(body["error"]?["message"]?.stringValue?.contains("Run a node") == true)
            let metrics = String(decoding: gateway.metrics.render(), as: UTF8.self)
            #expect(metrics.contains(#"hearth_quota_refusals_total{identity="anonymous"} 1"#))
        }
    }

    @Test func aContributorGetsMoreHeadroomThanAPureConsumer() async throws {
        let gateway = try await gateway(floor: 25)
        let contributor = IdentityKey.generate()
        let consumer = IdentityKey.generate()
        // The contributor's certified node served 1,000 tokens, credited through the ledger.
        let node = IdentityKey.generate()
        let receipt = Receipt(
            requestID: "earned",
            gateway: gateway.id,
            node: node.nodeID,
            account: contributor.nodeID,
            consumer: "anonymous",
            model: testModel,
            modelSHA256: DefaultModel.sha256,
            promptTokens: 400,
            completionTokens: 600,
            maxTokens: 600,
            startedAt: 1,
            finishedAt: 2,
            outcome: .ok
        )
        try await gateway.database.record(
            UsageRecord(
                requestID: "earned",
                route: "/v1/chat/completions",
                model: testModel.rawValue,
                nodeID: node.nodeID.rawValue,
                promptTokens: 400,
                completionTokens: 600,
                status: "ok",
                startedAt: Date(),
                firstByteMilliseconds: 1,
                durationMilliseconds: 2
            ),
            settling: .credit(receipt, signed: try receipt.signed(by: node).encoded()),
            gateway: IdentityKey.generate(),
            reciprocity: Reciprocity(floorTokensPerHour: 25, ceilingTokensPerHour: 100_000)
        )
        try await gateway.application.test(.router) { client in
            let auth = AuthRoutesTests()
            let contributorToken = try await auth.login(client, contributor)
            let consumerToken = try await auth.login(client, consumer)

            var consumerServed = 0
            while try await send(client, gateway, headers: auth.bearer(consumerToken)).0 == .ok { consumerServed += 1 }
            var contributorServed = 0
            while contributorServed < 20, try await send(client, gateway, headers: auth.bearer(contributorToken)).0 == .ok { contributorServed += 1 }
            #expect(consumerServed == 3)
            #expect(contributorServed == 20)

            let standing = try await client.execute(uri: "/api/reciprocity/standing", method: .get, headers: auth.bearer(contributorToken)) {
                decode($0.body)
            }
            #expect(standing["contributed_tokens"]?.integerValue == 1000)
            #expect(standing["consumed_tokens"]?.integerValue == 200)
            #expect(standing["standing"]?.integerValue == 800)
            #expect(standing["quota_tokens_per_hour"]?.integerValue == 825)
            let pure = try await client.execute(uri: "/api/reciprocity/standing", method: .get, headers: auth.bearer(consumerToken)) {
                decode($0.body)
            }
            #expect(pure["quota_tokens_per_hour"]?.integerValue == 25)
            #expect(pure["consumed_tokens"]?.integerValue == 30)
        }
    }
}
