package import Foundation

/// One row of a result, by column name. The accessors read what either database hands back for a column of that
/// kind: SQLite has no boolean or date type (0/1, and text in UTC as GRDB writes it), PostgreSQL returns `numeric`
/// for sums of integers.
package struct SQLRow: Sendable {
    let columns: [String: SQLValue]

    package init(_ columns: [String: SQLValue]) {
        self.columns = columns
    }

    /// The raw value of `column` (`.null` when absent or NULL).
    subscript(_ column: String) -> SQLValue { columns[column] ?? .null }

    func isNull(_ column: String) -> Bool { self[column] == .null }

    package func string(_ column: String) throws -> String {
        guard let value = optionalString(column) else { throw SQLRowError(column: column, expected: "text", found: self[column]) }
        return value
    }

    package func optionalString(_ column: String) -> String? {
        if case .text(let value) = self[column] { return value }
        return nil
    }

    package func int64(_ column: String) throws -> Int64 {
        guard let value = optionalInt64(column) else { throw SQLRowError(column: column, expected: "an integer", found: self[column]) }
        return value
    }

    package func int(_ column: String) throws -> Int { Int(try int64(column)) }

    package func optionalInt64(_ column: String) -> Int64? {
        switch self[column] {
        case .integer(let value): value
        case .double(let value) where value.rounded() == value && abs(value) < 9.0e18: Int64(value)
        case .bool(let value): value ? 1 : 0
        default: nil
        }
    }

    package func double(_ column: String) throws -> Double {
        guard let value = optionalDouble(column) else { throw SQLRowError(column: column, expected: "a number", found: self[column]) }
        return value
    }

    package func optionalDouble(_ column: String) -> Double? {
        switch self[column] {
        case .double(let value): value
        case .integer(let value): Double(value)
        default: nil
        }
    }

    package func bool(_ column: String) throws -> Bool {
        switch self[column] {
        case .bool(let value): return value
        case .integer(let value): return value != 0
        default: throw SQLRowError(column: column, expected: "a boolean", found: self[column])
        }
    }

    package func data(_ column: String) throws -> Data {
        guard let value = optionalData(column) else { throw SQLRowError(column: column, expected: "bytes", found: self[column]) }
        return value
    }

    func optionalData(_ column: String) -> Data? {
        if case .blob(let value) = self[column] { return value }
        return nil
    }

    package func date(_ column: String) throws -> Date {
        guard let value = optionalDate(column) else { throw SQLRowError(column: column, expected: "a date", found: self[column]) }
        return value
    }

    package func optionalDate(_ column: String) -> Date? {
        switch self[column] {
        case .date(let value): value
        case .text(let value): SQLiteDateText.parse(value)
        case .integer(let value): Date(timeIntervalSince1970: Double(value))
        case .double(let value): Date(timeIntervalSince1970: value)
        default: nil
        }
    }
}

/// A column held something other than its reader expected: a schema and its code disagree.
package struct SQLRowError: Error, CustomStringConvertible {
    var column: String
    var expected: String
    var found: SQLValue

    package init(column: String, expected: String, found: SQLValue) {
        self.column = column
        self.expected = expected
        self.found = found
    }

    package var description: String { "column '\(column)' should hold \(expected), found \(found)" }
}

/// Dates as GRDB writes them into SQLite: `yyyy-MM-dd HH:mm:ss.SSS` in UTC (text sorts as time does).
enum SQLiteDateText {
    static func parse(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        guard bytes.count >= 19 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard bytes[index] >= 48, bytes[index] <= 57 else { return nil }
                value = value * 10 + Int(bytes[index] - 48)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10), let hour = number(11..<13),
            let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var fraction = 0.0
        if bytes.count > 20, bytes[19] == UInt8(ascii: ".") {
            var scale = 0.1
            for byte in bytes[20...] {
                guard byte >= 48, byte <= 57 else { break }
                fraction += Double(byte - 48) * scale
                scale /= 10
            }
        }
        var components = DateComponents()
        components.calendar = Calendar(identifier: .gregorian)
        components.timeZone = TimeZone(identifier: "UTC")
        (components.year, components.month, components.day) = (year, month, day)
        (components.hour, components.minute, components.second) = (hour, minute, second)
        guard let date = components.date else { return nil }
        return date.addingTimeInterval(fraction)
    }
}
