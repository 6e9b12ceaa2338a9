public import Foundation

/// One entry of a gateway's ledger: a credited receipt (the node's COSE_Sign1 bytes, unchanged), its position, the
/// hash of the entry before it (32 zero bytes for the first), and when it was credited. The gateway signs it as a
/// COSE_Sign1 of its own (its countersignature); the SHA-256 of those bytes is what the next entry commits to.
public struct LedgerEntry: Sendable, Equatable {
    public var seq: Int64
    public var previousHash: Data
    /// The node's signed receipt.
    public var receipt: [UInt8]
    public var creditedAt: Date

    public init(seq: Int64, previousHash: Data, receipt: [UInt8], creditedAt: Date) {
        self.seq = seq
        self.previousHash = previousHash
        self.receipt = receipt
        self.creditedAt = creditedAt
    }

    public var cbor: CBOR {
        .map([
            (.text("seq"), .int(seq)),
            (.text("prev"), .bytes(Array(previousHash))),
            (.text("receipt"), .bytes(receipt)),
            (.text("credited_ms"), .int(Int64(creditedAt.timeIntervalSince1970 * 1000))),
        ])
    }

    /// The entry countersigned by the gateway, as COSE_Sign1 bytes.
    public func signed(by gateway: IdentityKey) throws -> [UInt8] {
        try COSESign1.sign(payload: try cbor.encoded(), with: gateway).encoded()
    }

    /// Reads an entry map.
    /// - Throws: `ReceiptError.malformed` naming the field.
    public init(cbor: CBOR) throws(ReceiptError) {
        guard case .map(let pairs) = cbor, pairs.count == 4 else { throw .malformed("not a ledger entry") }
        guard let seq = cbor[.text("seq")]?.int64, seq >= 1 else { throw .malformed("seq") }
        guard let previous = cbor[.text("prev")]?.bytesValue, previous.count == 32 else { throw .malformed("prev") }
        guard let receipt = cbor[.text("receipt")]?.bytesValue else { throw .malformed("receipt") }
        guard let credited = cbor[.text("credited_ms")]?.int64, credited >= 0 else { throw .malformed("credited_ms") }
        self.init(seq: seq, previousHash: Data(previous), receipt: receipt, creditedAt: Date(timeIntervalSince1970: Double(credited) / 1000))
    }
}
