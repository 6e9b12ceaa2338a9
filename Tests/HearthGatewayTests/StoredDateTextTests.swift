import Foundation
import Testing

@testable import HearthStore

/// Dates are bound as the text GRDB stores; written without its formatter, they must be the same text (the
/// reference is a formatter set up as GRDB's own).
struct StoredDateTextTests {
    @Test func datesAreTheTextGRDBWouldStore() {
        let grdb = DateFormatter()
        grdb.dateFormat = "yyyy-MM-dd HH:mm:ss.SSS"
        grdb.locale = Locale(identifier: "en_US_POSIX")
        grdb.timeZone = TimeZone(secondsFromGMT: 0)
        var generator = SystemRandomNumberGenerator()
        let edges: [TimeInterval] = [0, -0.0005, -1, 0.9995, 951_782_400, 4_107_542_399.999, -2_208_988_800.5, 1_798_761_599.9999]
        let samples = edges + (0..<2000).map { _ in Double.random(in: -4e9...8e9, using: &generator) }
        for seconds in samples {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(SQLiteStore.storedText(of: date) == grdb.string(from: date), "\(seconds)")
        }
    }
}
