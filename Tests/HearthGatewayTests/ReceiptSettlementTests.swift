import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// The gateway's side of receipts with a real SQLite file: what is credited, what is refused and why, and that a
/// receipt is credited once.
struct ReceiptSettlementTests {
    let nodeKey = IdentityKey.generate()

    /// A fake node (named as such) that streams `pieces` with the engine's usage and signs a receipt with `sign`.
    func gateway(sign: @escaping @Sendable (NodeRequest, IdentityKey) -> String?) async throws -> Gateway {
        let key = nodeKey
        let (gateway, _) = try await makeGateway([
            key.nodeID: .respondWithReceipt(
                status: 200,
                contentType: "text/event-stream",
                chunks: FakeNodeTransport.chatStream(["a", "b", "c"], promptTokens: 7),
                receipt: { sign($0, key) }
            )
        ])
        announce(gateway, announcement(key.nodeID))
        return gateway
    }

    /// A receipt as a node would sign it for `request`, with `change` applied.
    static func receipt(for request: NodeRequest, gateway: NodeID, node: IdentityKey, change: (inout Receipt) -> Void = { _ in }) -> Receipt {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        var receipt = Receipt(
            requestID: request.requestID,
            gateway: gateway,
            node: node.nodeID,
            account: nil,
            consumer: request.consumer,
            model: testModel,
            modelSHA256: SHA256Digest(hex: String(repeating: "0", count: 64))!,
            promptTokens: 7,
            completionTokens: 3,
            maxTokens: 64,
            startedAt: now - 5,
            finishedAt: now,
            outcome: .ok
        )
        change(&receipt)
        return receipt
    }

    static func token(_ receipt: Receipt, by key: IdentityKey) -> String? {
        (try? receipt.signed(by: key).encoded()).map { SignedToken.base64url(Data($0)) }
    }

    func streamOnce(_ gateway: Gateway) async throws {
        try await gateway.application.test(.router) { client in
            let body: JSONValue = ["model": .string(testModel.rawValue), "messages": [["role": "user", "content": "hi"]], "stream": true]
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: try json(body)) { response in
                #expect(response.status == .ok)
            }
        }
        // Metering follows the last byte.
        await gateway.settled()
    }

    @Test func anHonestReceiptIsCreditedAndCountersigned() async throws {
        let gatewayBox = GatewayIDBox()
        let gateway = try await gateway { request, key in
            Self.token(Self.receipt(for: request, gateway: gatewayBox.id!, node: key), by: key)
        }
        gatewayBox.id = gateway.id
        try await streamOnce(gateway)
        let ledger = try await gateway.database.ledger()
        #expect(ledger.count == 1)
        #expect(ledger.first?.completionTokens == 3)
        #expect(ledger.first?.nodeID == nodeKey.nodeID.rawValue)
        #expect(try await gateway.database.receiptRejections().isEmpty)
        let metrics = String(decoding: gateway.metrics.render(), as: UTF8.self)
        #expect(metrics.contains(#"hearth_receipts_total{result="credited"} 1"#))
    }

    @Test(arguments: [
        ("inflated", "mismatch"), ("over max_tokens", "mismatch"), ("another signer", "wrong_signer"), ("garbage", "malformed"),
        ("none", "missing"), ("another gateway", "mismatch"), ("someone else's account", "mismatch"),
    ])
    func aDishonestOrMissingReceiptIsKeptForAuditAndNotCredited(_ kind: String, _ reason: String) async throws {
        let gatewayBox = GatewayIDBox()
        let gateway = try await gateway { request, key in
            let id = gatewayBox.id!
            switch kind {
            case "inflated": return Self.token(Self.receipt(for: request, gateway: id, node: key) { $0.completionTokens = 30 }, by: key)
            case "over max_tokens":
                return Self.token(Self.receipt(for: request, gateway: id, node: key) { $0.maxTokens = 2 }, by: key)
            case "another signer": return Self.token(Self.receipt(for: request, gateway: id, node: key), by: IdentityKey.generate())
            case "another gateway": return Self.token(Self.receipt(for: request, gateway: NodeID.random(), node: key), by: key)
            case "garbage": return "not-a-receipt"
            case "someone else's account":
                return Self.token(Self.receipt(for: request, gateway: id, node: key) { $0.account = NodeID.random() }, by: key)
            default: return nil
            }
        }
        gatewayBox.id = gateway.id
        try await streamOnce(gateway)
        #expect(try await gateway.database.ledger().isEmpty)
        let rejections = try await gateway.database.receiptRejections()
        #expect(rejections.map(\.reason) == [reason])
        #expect(String(decoding: gateway.metrics.render(), as: UTF8.self).contains(#"hearth_receipts_total{result="refused",reason="\#(reason)"} 1"#))
        // The request itself is still metered with the engine's counts, and the node's reputation suffers.
        #expect(try await gateway.database.recentUsage().first?.completionTokens == 3)
        #expect(gateway.registry.refusedReceipts()[nodeKey.nodeID] == 1)
        #expect(gateway.registry.routableNodes().first?.refusedReceipts == 1)
    }

    @Test func aRevokedDeviceEarnsNothing() async throws {
        let gatewayBox = GatewayIDBox()
        let account = IdentityKey.generate()
        let gateway = try await gateway { request, key in
            Self.token(Self.receipt(for: request, gateway: gatewayBox.id!, node: key) { $0.account = account.nodeID }, by: key)
        }
        gatewayBox.id = gateway.id
        var certified = announcement(nodeKey.nodeID)
        certified.account = account.nodeID
        announce(gateway, certified)
        let certificate = try DeviceCertificate.issue(account: account, deviceKey: nodeKey.publicKey, deviceName: "n", validFor: 86400)
        try await gateway.database.sawDevice(certificate)
        #expect(try await gateway.database.revoke(device: nodeKey.nodeID, by: account.nodeID))
        try await streamOnce(gateway)
        #expect(try await gateway.database.ledger().isEmpty)
        #expect(try await gateway.database.receiptRejections().map(\.reason) == ["device_revoked"])
        #expect(try await gateway.database.balance(of: account.nodeID, reciprocity: Reciprocity()).contributed == 0)
        let metrics = String(decoding: gateway.metrics.render(), as: UTF8.self)
        #expect(metrics.contains(#"hearth_receipts_total{result="refused",reason="device_revoked"} 1"#))
        #expect(gateway.registry.refusedReceipts()[nodeKey.nodeID] == 1)
    }

    @Test func aReceiptIsCreditedOnceEvenAfterARestart() async throws {
        let directory = try TestEnvironment.temporaryDirectory("ledger-replay")
        let gatewayKey = IdentityKey.generate()
        let receipt = Receipt(
            requestID: "req-replayed",
            gateway: gatewayKey.nodeID,
            node: nodeKey.nodeID,
            account: nil,
            consumer: "anonymous",
            model: testModel,
            modelSHA256: DefaultModel.sha256,
            promptTokens: 5,
            completionTokens: 5,
            maxTokens: 8,
            startedAt: 1,
            finishedAt: 2,
            outcome: .ok
        )
        let signed = try receipt.signed(by: nodeKey).encoded()
        func usage(_ id: String) -> UsageRecord {
            UsageRecord(
                requestID: id,
                route: "/v1/chat/completions",
                model: testModel.rawValue,
                nodeID: nodeKey.nodeID.rawValue,
                promptTokens: 5,
                completionTokens: 5,
                status: "ok",
                startedAt: Date(),
                firstByteMilliseconds: 1,
                durationMilliseconds: 2
            )
        }
        let first = try GatewayDatabase.open(directory: directory)
        try await first.migrate()
        try await first.record(usage("req-replayed"), settling: .credit(receipt, signed: signed), gateway: gatewayKey)
        await #expect(throws: (any Error).self) {
            try await first.record(usage("req-other"), settling: .credit(receipt, signed: signed), gateway: gatewayKey)
        }
        // A new process on the same file refuses it too, and the failed attempts left no usage row behind.
        let reopened = try GatewayDatabase.open(directory: directory)
        try await reopened.migrate()
        await #expect(throws: (any Error).self) {
            try await reopened.record(usage("req-third"), settling: .credit(receipt, signed: signed), gateway: gatewayKey)
        }
        #expect(try await reopened.ledger().count == 1)
        #expect(try await reopened.recentUsage().map(\.requestID) == ["req-replayed"])
    }
    /// A pooled receipt's tokens go to each node's account by its layers; an uncertified node's share is recorded
    /// in the ledger but credits no account.
    @Test func aPooledReceiptCreditsEveryMembersAccountItsShare() async throws {
        let directory = try TestEnvironment.temporaryDirectory("ledger-pool")
        let gatewayKey = IdentityKey.generate()
        let member = IdentityKey.generate()
        let uncertified = IdentityKey.generate()
        let (headAccount, memberAccount) = (IdentityKey.generate().nodeID, IdentityKey.generate().nodeID)
        let shares = PoolShares(
            pool: .random(),
            epoch: 1,
            shares: [.init(node: nodeKey.nodeID, layers: 6), .init(node: member.nodeID, layers: 18), .init(node: uncertified.nodeID, layers: 6)]
        )
        let receipt = Receipt(
            requestID: "req-pooled",
            gateway: gatewayKey.nodeID,
            node: nodeKey.nodeID,
            account: headAccount,
            consumer: "anonymous",
            model: testModel,
            modelSHA256: DefaultModel.sha256,
            promptTokens: 51,
            completionTokens: 50,
            maxTokens: 64,
            startedAt: 1,
            finishedAt: 2,
            outcome: .ok,
            pool: shares
        )
        let database = try GatewayDatabase.open(directory: directory)
        try await database.migrate()
        let usage = UsageRecord(
            requestID: "req-pooled",
            route: "/v1/chat/completions",
            model: testModel.rawValue,
            nodeID: nodeKey.nodeID.rawValue,
            promptTokens: 51,
            completionTokens: 50,
            status: "ok",
            startedAt: Date(),
            firstByteMilliseconds: 1,
            durationMilliseconds: 2
        )
        let accounts = [nodeKey.nodeID: headAccount, member.nodeID: memberAccount]
        let row = try await database.record(
            usage,
            settling: .credit(receipt, signed: try receipt.signed(by: nodeKey).encoded()),
            gateway: gatewayKey,
            accounts: { accounts[$0] }
        )
        // 101 tokens by 6 : 18 : 6 is 20.2, 60.6, 20.2: 20, 61, 20.
        let reciprocity = Reciprocity()
        let now = Date()
        #expect(try await database.balance(of: headAccount, reciprocity: reciprocity, now: now).contributed.rounded() == 20)
        #expect(try await database.balance(of: memberAccount, reciprocity: reciprocity, now: now).contributed.rounded() == 61)
        let entry = try LedgerEntry(cbor: try CBOR(decoding: try COSESign1(decoding: Array(try #require(row).entry)).payload))
        #expect(
            entry.credits == [
                .init(node: nodeKey.nodeID, account: headAccount, tokens: 20), .init(node: member.nodeID, account: memberAccount, tokens: 61),
                .init(node: uncertified.nodeID, account: nil, tokens: 20),
            ]
        )
    }
}

/// The gateway's id, known only once it is built, for the fake node's receipt closure.
final class GatewayIDBox: @unchecked Sendable {
    var id: NodeID?
}
