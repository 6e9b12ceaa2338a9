import Crypto
package import Foundation

/// The ledger's signed head: how many entries it has and the hash of the last one, signed by the gateway, so an
/// export can be checked to be complete and current.
package struct LedgerHead: Sendable, Equatable {
    var seq: Int64
    /// The last entry's hash (32 zero bytes for an empty ledger).
    var hash: Data
    var gateway: NodeID
    var at: Date

    package init(seq: Int64, hash: Data, gateway: NodeID, at: Date) {
        self.seq = seq
        self.hash = hash
        self.gateway = gateway
        self.at = at
    }

    var cbor: CBOR {
        .map([
            (.text("seq"), .int(seq)), (.text("hash"), .bytes(Array(hash))), (.text("gateway"), .text(gateway.rawValue)),
            (.text("at_ms"), .int(Int64(at.timeIntervalSince1970 * 1000))),
        ])
    }

    package func signed(by key: IdentityKey) throws -> [UInt8] {
        try COSESign1.sign(payload: try cbor.encoded(), with: key).encoded()
    }

    package init(cbor: CBOR) throws(ReceiptError) {
        guard case .map(let pairs) = cbor, pairs.count == 4, let seq = cbor[.text("seq")]?.int64, seq >= 0,
            let hash = cbor[.text("hash")]?.bytesValue, hash.count == 32,
            let gateway = cbor[.text("gateway")]?.textValue.flatMap(NodeID.init), let at = cbor[.text("at_ms")]?.int64
        else { throw .malformed("ledger head") }
        self.init(seq: seq, hash: Data(hash), gateway: gateway, at: Date(timeIntervalSince1970: Double(at) / 1000))
    }
}

/// Checks an exported ledger offline: every gateway countersignature, every node receipt, the whole hash chain,
/// and the signed head. Names the first bad entry.
package enum LedgerVerifier {
    package struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// The sequence number of the first bad entry, or `nil` for a problem with the head.
        var seq: Int64?
        var reason: String
        package var description: String { seq.map { "entry \($0): \(reason)" } ?? "head: \(reason)" }
    }

    /// What a successful check found.
    package struct Summary: Sendable, Equatable {
        package var entries: Int
        package var promptTokens: Int
        package var completionTokens: Int
        package var headHash: Data
        /// Entries whose tokens were shared among a pool's nodes.
        package var pooledEntries = 0
        /// Whether a head signed by the gateway vouched for the chain's end (without one, entries after the last
        /// one shown could have been left out).
        package var signedHead = true
        /// The credited requests, to check across chains that none is credited twice.
        package var requestIDs: [String] = []
    }

    /// Verifies `entries` (the gateway's COSE_Sign1 bytes, in order) against `head`, for the gateway `gateway`. A nil
    /// `head` checks the entries alone (another gateway's chain, read where that gateway is not asked).
    /// - Throws: `Failure` naming the first bad entry (or the head).
    package static func verify(entries: [[UInt8]], head: [UInt8]?, gateway: NodeID) throws(Failure) -> Summary {
        var previous = Data(count: 32)
        var summary = Summary(entries: 0, promptTokens: 0, completionTokens: 0, headHash: previous)
        for (index, bytes) in entries.enumerated() {
            let seq = Int64(index + 1)
            func fail(_ reason: String) -> Failure { Failure(seq: seq, reason: reason) }
            guard let message = try? COSESign1(decoding: bytes) else { throw fail("not a COSE_Sign1 message") }
            guard let kid = message.keyID, kid.count == 32, NodeID(publicKey: kid) == gateway else {
                throw fail("not signed by gateway \(gateway.short)")
            }
            guard message.isValid(publicKey: Data(kid)) else { throw fail("the gateway's signature does not verify") }
            guard let item = try? CBOR(decoding: message.payload), let entry = try? LedgerEntry(cbor: item) else {
                throw fail("the entry is not a ledger entry")
            }
            guard entry.seq == seq else { throw fail("sequence \(entry.seq) where \(seq) was expected (missing or reordered entry)") }
            guard entry.previousHash == previous else { throw fail("it does not commit to the previous entry's hash") }
            guard let receiptMessage = try? COSESign1(decoding: entry.receipt), let nodeKey = receiptMessage.keyID, nodeKey.count == 32
            else { throw fail("the node receipt is not a COSE_Sign1 message") }
            let receipt: Receipt
            do {
                receipt = try Receipt.verified(receiptMessage, from: NodeID(publicKey: nodeKey))
            } catch {
                throw fail("node receipt: \(error.description)")
            }
            guard receipt.gateway == gateway else { throw fail("the node receipt names another gateway") }
            // A pooled receipt's tokens are credited to its nodes by the documented split, nothing created or lost.
            switch (receipt.pool, entry.credits) {
            case (nil, nil): break
            case (let pool?, let credits?):
                let expected = pool.split(receipt.promptTokens + receipt.completionTokens)
                guard credits.map(\.node) == expected.map(\.node), credits.map(\.tokens) == expected.map(\.tokens) else {
                    throw fail("the credits are not the pool's shares of the receipt's tokens")
                }
                guard pool.shares.first?.node == receipt.node else { throw fail("the pooled receipt is not signed by the pool's head") }
                summary.pooledEntries += 1
            default: throw fail("credits without a pooled receipt, or a pooled receipt without credits")
            }
            previous = Data(SHA256.hash(data: bytes))
            summary.entries += 1
            summary.promptTokens += receipt.promptTokens
            summary.completionTokens += receipt.completionTokens
            summary.requestIDs.append(receipt.requestID)
        }
        guard let head else {
            summary.signedHead = false
            summary.headHash = previous
            return summary
        }
        guard let message = try? COSESign1(decoding: head), let kid = message.keyID, kid.count == 32, NodeID(publicKey: kid) == gateway,
            message.isValid(publicKey: Data(kid)), let item = try? CBOR(decoding: message.payload),
            let signedHead = try? LedgerHead(cbor: item), signedHead.gateway == gateway
        else { throw Failure(seq: nil, reason: "not a head signed by gateway \(gateway.short)") }
        guard signedHead.seq == Int64(entries.count) else {
            throw Failure(seq: nil, reason: "the head counts \(signedHead.seq) entries, the export has \(entries.count)")
        }
        guard signedHead.hash == previous else { throw Failure(seq: nil, reason: "the head's hash is not the last entry's") }
        summary.headHash = previous
        return summary
    }
}
