import Crypto
import Foundation
import Testing

@testable import HearthCore

@Suite struct PoolSharesTests {
    static let head = IdentityKey.generate()
    static let gateway = IdentityKey.generate()
    static func id(_ seed: UInt8) -> NodeID { PoolPlannerTests.id(seed) }

    static func shares(_ layers: [Int]) -> PoolShares {
        PoolShares(pool: PoolID("p-00000000000a")!, epoch: 3, shares: layers.enumerated().map { .init(node: id(UInt8($0 + 1)), layers: $1) })
    }

    @Test func splitsTokensByLayersWithNothingCreatedOrLost() {
        #expect(Self.shares([10, 10, 10]).split(30).map(\.tokens) == [10, 10, 10])
        // 100 × 10/30 = 33.3 each: the one left over goes to the first of the equal remainders, the head.
        #expect(Self.shares([10, 10, 10]).split(100).map(\.tokens) == [34, 33, 33])
        // 7 × (5, 25) / 30 = 1.17, 5.83: the larger remainder gets the extra token.
        #expect(Self.shares([5, 25]).split(7).map(\.tokens) == [1, 6])
        #expect(Self.shares([0, 30]).split(9).map(\.tokens) == [0, 9])
        #expect(Self.shares([3, 4]).split(0).map(\.tokens) == [0, 0])
        for tokens in [1, 2, 17, 999, 123_457] {
            for layers in [[1, 1, 1], [11, 12, 7], [1, 29], [0, 5, 25]] {
                let parts = Self.shares(layers).split(tokens)
                #expect(parts.map(\.tokens).reduce(0, +) == tokens, "\(layers) \(tokens)")
                #expect(parts.map(\.node) == Self.shares(layers).shares.map(\.node))
            }
        }
    }

    static func receipt(pool: PoolShares?) -> Receipt {
        Receipt(
            requestID: "r1",
            gateway: gateway.nodeID,
            node: head.nodeID,
            account: nil,
            consumer: "anonymous",
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            promptTokens: 40,
            completionTokens: 60,
            maxTokens: 64,
            startedAt: 1,
            finishedAt: 2,
            outcome: .ok,
            pool: pool
        )
    }

    @Test func aPooledReceiptIsVersionTwoAndAPlainOneUnchanged() throws {
        let plain = Self.receipt(pool: nil)
        #expect(plain.cbor[.text("v")]?.int64 == 1 && plain.cbor[.text("pool")] == nil)
        var shares = Self.shares([10, 20])
        shares.shares[0].node = Self.head.nodeID
        let pooled = Self.receipt(pool: shares)
        #expect(pooled.cbor[.text("v")]?.int64 == 2)
        let message = try COSESign1(decoding: try pooled.signed(by: Self.head).encoded())
        #expect(try Receipt.verified(message, from: Self.head.nodeID) == pooled)
        // A version-1 receipt with a pool, or a version-2 one without, is malformed.
        guard case .map(var pairs) = pooled.cbor else { return }
        pairs[0] = (.text("v"), .int(1))
        #expect(throws: ReceiptError.self) { try Receipt(cbor: .map(pairs)) }
        guard case .map(var bare) = plain.cbor else { return }
        bare[0] = (.text("v"), .int(2))
        #expect(throws: ReceiptError.self) { try Receipt(cbor: .map(bare)) }
    }

    /// The ledger verifier holds every pooled entry's credits to the split, and refuses credits on a plain receipt.
    @Test func theVerifierChecksThatCreditsAreTheShares() throws {
        var shares = Self.shares([10, 20])
        shares.shares[0].node = Self.head.nodeID
        func ledger(_ receipt: Receipt, credits: [LedgerEntry.Credit]?) throws -> (entries: [[UInt8]], head: [UInt8]) {
            let signed = try receipt.signed(by: Self.head).encoded()
            let entry = try LedgerEntry(seq: 1, previousHash: Data(count: 32), receipt: signed, creditedAt: Date(), credits: credits).signed(
                by: Self.gateway
            )
            let head = try LedgerHead(seq: 1, hash: Data(SHA256.hash(data: entry)), gateway: Self.gateway.nodeID, at: Date()).signed(by: Self.gateway)
            return ([entry], head)
        }
        let pooled = Self.receipt(pool: shares)
        let fair = LedgerEntry.credits(for: pooled) { _ in nil }
        #expect(fair?.map(\.tokens) == [33, 67])
        let good = try ledger(pooled, credits: fair)
        #expect(try LedgerVerifier.verify(entries: good.entries, head: good.head, gateway: Self.gateway.nodeID).pooledEntries == 1)
        let greedy = fair.map { credits in
            credits.enumerated().map { $0 == 0 ? LedgerEntry.Credit(node: $1.node, account: nil, tokens: $1.tokens + 1) : $1 }
        }
        for (receipt, credits) in [(pooled, greedy), (pooled, nil), (Self.receipt(pool: nil), fair)] {
            let bad = try ledger(receipt, credits: credits)
            #expect(throws: LedgerVerifier.Failure.self) {
                try LedgerVerifier.verify(entries: bad.entries, head: bad.head, gateway: Self.gateway.nodeID)
            }
        }
    }
}
