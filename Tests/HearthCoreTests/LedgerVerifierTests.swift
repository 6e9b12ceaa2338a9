import Crypto
import Foundation
import Testing

@testable import HearthCore

struct LedgerVerifierTests {
    let gateway = IdentityKey.generate()
    let node = IdentityKey.generate()

    /// A chain of `count` countersigned entries and its signed head, as the gateway writes them.
    func ledger(_ count: Int) throws -> (entries: [[UInt8]], head: [UInt8]) {
        var entries: [[UInt8]] = []
        var previous = Data(count: 32)
        for seq in 1...count {
            let receipt = Receipt(
                requestID: "r\(seq)",
                gateway: gateway.nodeID,
                node: node.nodeID,
                account: nil,
                consumer: "anonymous",
                model: DefaultModel.id,
                modelSHA256: DefaultModel.sha256,
                promptTokens: 10,
                completionTokens: seq,
                maxTokens: 16,
                startedAt: 1,
                finishedAt: 2,
                outcome: .ok
            )
            let entry = try LedgerEntry(
                seq: Int64(seq),
                previousHash: previous,
                receipt: try receipt.signed(by: node).encoded(),
                creditedAt: Date()
            ).signed(by: gateway)
            entries.append(entry)
            previous = Data(SHA256.hash(data: entry))
        }
        let head = try LedgerHead(seq: Int64(count), hash: previous, gateway: gateway.nodeID, at: Date()).signed(by: gateway)
        return (entries, head)
    }

    @Test func aWholeChainVerifiesAndSumsItsReceipts() throws {
        let (entries, head) = try ledger(4)
        let summary = try LedgerVerifier.verify(entries: entries, head: head, gateway: gateway.nodeID)
        #expect(summary.entries == 4)
        #expect(summary.promptTokens == 40)
        #expect(summary.completionTokens == 10)
    }

    @Test func namesTheFirstBadEntry() throws {
        let (entries, head) = try ledger(4)
        func failure(_ entries: [[UInt8]], _ head: [UInt8], gateway: NodeID? = nil) -> LedgerVerifier.Failure? {
            do {
                _ = try LedgerVerifier.verify(entries: entries, head: head, gateway: gateway ?? self.gateway.nodeID)
                return nil
            } catch {
                return error
            }
        }
        var flipped = entries
        flipped[2][flipped[2].count - 70] ^= 0x01
        #expect(failure(flipped, head)?.seq == 3)
        var missing = entries
        missing.remove(at: 1)
        #expect(failure(missing, head)?.seq == 2)
        #expect(failure(Array(entries.reversed()), head)?.seq == 1)
        #expect(failure(Array(entries.prefix(3)), head)?.seq == nil)  // the head counts four
        #expect(failure(entries, try ledger(4).head)?.seq == nil)  // another chain's head
        #expect(failure(entries, head, gateway: IdentityKey.generate().nodeID)?.seq == 1)
        // An entry re-signed by someone else, however well formed.
        var resigned = entries
        let message = try COSESign1(decoding: entries[0])
        resigned[0] = try COSESign1.sign(payload: message.payload, with: IdentityKey.generate()).encoded()
        #expect(failure(resigned, head)?.seq == 1)
    }
}
