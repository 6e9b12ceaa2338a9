import Foundation
import Synchronization

/// The receipts this node signed since it started, per hour for the last day: what its owner's dashboard shows as
/// work done. It counts what the node claimed; the gateway's ledger says what was credited.
final class ReceiptLog: Sendable {
    struct Hour: Encodable, Equatable {
        /// Start of the hour, Unix seconds.
        var start: Int64
        var receipts: Int
        var tokens: Int
    }

    private static let keptHours = 24
    private let hours = Mutex<[Hour]>([])

    func signed(tokens: Int, at date: Date = Date()) {
        let start = Int64(date.timeIntervalSince1970) / 3600 * 3600
        hours.withLock { hours in
            if hours.last?.start == start {
                hours[hours.count - 1].receipts += 1
                hours[hours.count - 1].tokens += tokens
            } else {
                hours.append(Hour(start: start, receipts: 1, tokens: tokens))
                hours.removeFirst(max(0, hours.count - Self.keptHours))
            }
        }
    }

    /// The last day, one entry per hour, oldest first, zeros where nothing was signed.
    func lastDay(now: Date = Date()) -> [Hour] {
        let current = Int64(now.timeIntervalSince1970) / 3600 * 3600
        let known = hours.withLock { Dictionary($0.map { ($0.start, $0) }, uniquingKeysWith: { first, _ in first }) }
        return (0..<Self.keptHours).reversed().map { back in
            let start = current - Int64(back) * 3600
            return known[start] ?? Hour(start: start, receipts: 0, tokens: 0)
        }
    }
}
