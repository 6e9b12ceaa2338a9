package import Foundation

/// One entry of a gateway's ledger: a credited receipt (the node's COSE_Sign1 bytes, unchanged), its position, the
/// hash of the entry before it (32 zero bytes for the first), and when it was credited. The gateway signs it as a
/// COSE_Sign1 of its own (its countersignature); the SHA-256 of those bytes is what the next entry commits to.
package struct LedgerEntry: Sendable, Equatable {
    /// One node's part of a pooled answer: its share of the tokens (`PoolShares.split`) and the account it earns for.
    package struct Credit: Sendable, Equatable {
        var node: NodeID
        /// The account of the node's device certificate when the gateway credited it; `nil` for an uncertified node.
        package var account: NodeID?
        package var tokens: Int

        package init(node: NodeID, account: NodeID?, tokens: Int) {
            self.node = node
            self.account = account
            self.tokens = tokens
        }
    }

    var seq: Int64
    var previousHash: Data
    /// The node's signed receipt.
    var receipt: [UInt8]
    var creditedAt: Date
    /// For a pooled receipt, how its tokens were shared: one credit per node of the pool, in the receipt's order.
    var credits: [Credit]?

    package init(seq: Int64, previousHash: Data, receipt: [UInt8], creditedAt: Date, credits: [Credit]? = nil) {
        self.seq = seq
        self.previousHash = previousHash
        self.receipt = receipt
        self.creditedAt = creditedAt
        self.credits = credits
    }

    /// The credits of a pooled receipt: `PoolShares.split` of its tokens, with each node's account from `accounts`.
    package static func credits(for receipt: Receipt, accounts: (NodeID) -> NodeID?) -> [Credit]? {
        receipt.pool.map { pool in
            pool.split(receipt.promptTokens + receipt.completionTokens).map { Credit(node: $0.node, account: accounts($0.node), tokens: $0.tokens) }
        }
    }

    var cbor: CBOR {
        var pairs: [(CBOR, CBOR)] = [
            (.text("seq"), .int(seq)),
            (.text("prev"), .bytes(Array(previousHash))),
            (.text("receipt"), .bytes(receipt)),
            (.text("credited_ms"), .int(Int64(creditedAt.timeIntervalSince1970 * 1000))),
        ]
        if let credits {
            pairs.append(
                (
                    .text("credits"),
                    .array(credits.map { .array([.text($0.node.rawValue), $0.account.map { .text($0.rawValue) } ?? .null, .int(Int64($0.tokens))]) })
                )
            )
        }
        return .map(pairs)
    }

    /// The entry countersigned by the gateway, as COSE_Sign1 bytes.
    package func signed(by gateway: IdentityKey) throws -> [UInt8] {
        try COSESign1.sign(payload: try cbor.encoded(), with: gateway).encoded()
    }

    /// Reads an entry map.
    /// - Throws: `ReceiptError.malformed` naming the field.
    package init(cbor: CBOR) throws(ReceiptError) {
        let hasCredits = cbor[.text("credits")] != nil
        guard case .map(let pairs) = cbor, pairs.count == (hasCredits ? 5 : 4) else { throw .malformed("not a ledger entry") }
        guard let seq = cbor[.text("seq")]?.int64, seq >= 1 else { throw .malformed("seq") }
        guard let previous = cbor[.text("prev")]?.bytesValue, previous.count == 32 else { throw .malformed("prev") }
        guard let receipt = cbor[.text("receipt")]?.bytesValue else { throw .malformed("receipt") }
        guard let credited = cbor[.text("credited_ms")]?.int64, credited >= 0 else { throw .malformed("credited_ms") }
        var credits: [Credit]?
        if hasCredits {
            guard case .array(let items)? = cbor[.text("credits")], items.count <= PoolPlanner.maxMembers + 1 else { throw .malformed("credits") }
            credits = []
            for item in items {
                guard case .array(let fields) = item, fields.count == 3, let node = fields[0].textValue.flatMap(NodeID.init),
                    let tokens = fields[2].int64, tokens >= 0, tokens <= Int64(Int32.max)
                else { throw .malformed("credits") }
                let account: NodeID?
                switch fields[1] {
                case .null: account = nil
                case .text(let text):
                    guard let id = NodeID(text) else { throw .malformed("credits") }
                    account = id
                default: throw .malformed("credits")
                }
                credits?.append(Credit(node: node, account: account, tokens: Int(tokens)))
            }
        }
        self.init(
            seq: seq,
            previousHash: Data(previous),
            receipt: receipt,
            creditedAt: Date(timeIntervalSince1970: Double(credited) / 1000),
            credits: credits
        )
    }
}
