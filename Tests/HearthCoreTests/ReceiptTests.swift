import Foundation
import Testing

@testable import HearthCore

struct ReceiptTests {
    let node = IdentityKey.generate()
    let gateway = NodeID(String(repeating: "9", count: 64))!
    let account = NodeID(String(repeating: "a", count: 64))!

    func receipt(prompt: Int = 31, completion: Int = 8, maxTokens: Int = 16) -> Receipt {
        Receipt(
            requestID: "req-1",
            gateway: gateway,
            node: node.nodeID,
            account: account,
            consumer: "user:\(account.rawValue)",
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            promptTokens: prompt,
            completionTokens: completion,
            maxTokens: maxTokens,
            startedAt: 1_800_000_000_000,
            finishedAt: 1_800_000_000_400,
            outcome: .ok
        )
    }

    var relayed: Receipt.Relayed {
        Receipt.Relayed(
            requestID: "req-1",
            gateway: gateway,
            account: account,
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            consumer: "user:\(account.rawValue)",
            maxTokens: 16,
            promptTokens: 31,
            completionTokens: 8,
            sentAt: 1_799_999_999_990,
            endedAt: 1_800_000_000_410
        )
    }

    @Test func signsEncodesAndVerifiesForTheServingNodeOnly() throws {
        let message = try receipt().signed(by: node)
        let read = try COSESign1(decoding: try message.encoded())
        #expect(try Receipt.verified(read, from: node.nodeID) == receipt())
        #expect(receipt().problem(against: relayed) == nil)
        #expect(throws: ReceiptError.wrongSigner) { try Receipt.verified(read, from: IdentityKey.generate().nodeID) }

        // Signed by another node, claiming this one.
        let impostor = IdentityKey.generate()
        #expect(throws: ReceiptError.wrongSigner) { try Receipt.verified(try receipt().signed(by: impostor), from: impostor.nodeID) }
        var forged = try receipt().signed(by: impostor)
        forged.keyID = Array(node.publicKey)
        #expect(throws: ReceiptError.badSignature) { try Receipt.verified(forged, from: node.nodeID) }

        var inflated = message
        inflated.payload = try receipt(completion: 9).cbor.encoded()
        #expect(throws: ReceiptError.badSignature) { try Receipt.verified(inflated, from: node.nodeID) }
    }

    @Test func refusesCountsAndTimesThatDoNotMatchTheRelay() {
        #expect(receipt(completion: 9).problem(against: relayed) == .mismatch("completion_tokens above what the engine reported"))
        #expect(receipt(prompt: 40).problem(against: relayed) == .mismatch("prompt_tokens above what the engine reported"))
        var overLimit = relayed
        overLimit.completionTokens = 20
        #expect(receipt(completion: 20).problem(against: overLimit) == .mismatch("completion_tokens above max_tokens"))
        var silent = relayed
        silent.promptTokens = nil
        silent.completionTokens = nil
        #expect(receipt().problem(against: silent) == .mismatch("tokens claimed but the engine reported none"))
        var late = receipt()
        late.finishedAt += 60_000
        #expect(late.problem(against: relayed) == .mismatch("times outside the request"))
        var otherModel = receipt()
        otherModel.modelSHA256 = SHA256Digest(hex: String(repeating: "0", count: 64))!
        #expect(otherModel.problem(against: relayed) == .mismatch("another model"))
        var otherAccount = receipt()
        otherAccount.account = NodeID.random()
        #expect(otherAccount.problem(against: relayed) == .mismatch("an account the node's certificate does not name"))
        var otherConsumer = receipt()
        otherConsumer.consumer = "anonymous"
        #expect(otherConsumer.problem(against: relayed) == .mismatch("another consumer"))
        // Fewer tokens than relayed is the node's loss, not a forgery.
        #expect(receipt(completion: 7).problem(against: relayed) == nil)
    }

    @Test func refusesMalformedReceiptMaps() throws {
        guard case .map(let pairs) = receipt().cbor else {
            Issue.record("not a map")
            return
        }
        func without(_ key: String) -> CBOR { .map(pairs.filter { $0.0 != .text(key) }) }
        func replacing(_ key: String, _ value: CBOR) -> CBOR { .map(pairs.map { $0.0 == .text(key) ? ($0.0, value) : $0 }) }
        let bad: [CBOR] = [
            .null, .array([]), without("node"), .map(pairs + [(.text("bonus"), .int(1))]),
            replacing("v", .int(2)), replacing("node", .text("short")), replacing("prompt_tokens", .int(-1)),
            replacing("completion_tokens", .text("8")), replacing("account", .int(1)), replacing("outcome", .text("great")),
            replacing("request", .text("")), replacing("model_sha256", .text("xyz")), replacing("started_ms", .int(-5)),
        ]
        for item in bad {
            #expect(throws: ReceiptError.self) { try Receipt(cbor: item) }
        }
        #expect(try Receipt(cbor: replacing("account", .null)).account == nil)
    }
}
