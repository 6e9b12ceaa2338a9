import HearthCore
import Hummingbird

/// Query parameters read strictly: a value that is not a whole number in range is a 400 naming the parameter, never
/// silently replaced by the default.
enum QueryParameter {
    /// The integer `name`, or `value` when the query does not have it.
    /// - Throws: `OpenAIError` 400 `invalid_value` with `param: name` for junk, overflow or a number out of `range`.
    static func integer(_ request: Request, _ name: String, default value: Int64, in range: ClosedRange<Int64>) throws -> Int64 {
        guard let text = request.uri.queryParameters.get(name) else { return value }
        guard let number = Int64(text), range.contains(number) else {
            throw OpenAIError(
                .invalidRequest,
                "'\(name)' must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(text.prefix(40))'.",
                param: name,
                code: "invalid_value"
            )
        }
        return number
    }
}
