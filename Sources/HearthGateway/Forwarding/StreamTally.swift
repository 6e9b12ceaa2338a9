import HearthCore
import NIOCore

/// What a relayed stream is worth, counted the way the node counts it for its receipt: the engine's usage event when
/// it came; otherwise, for a stream cut short, the prompt size from the engine's per-token timings and one token per
/// event after the first (which carries only the role).
struct StreamTally: Sendable {
    private(set) var usage: TokenUsage?
    /// Events that are neither the usage report alone nor `[DONE]`.
    private(set) var events = 0
    private(set) var promptFromTimings: Int?

    /// Counts `event` and says what it is.
    mutating func observe(_ event: ByteBuffer) -> UpstreamEvent {
        let kind = UpstreamEvent.classify(event)
        switch kind {
        case .usage(let reported, let usageOnly):
            usage = reported
            if !usageOnly { events += 1 }
        case .done: break
        case .other: events += 1
        }
        if promptFromTimings == nil, case .other = kind { promptFromTimings = EngineTimings.promptTokens(in: event.readableBytesView) }
        return kind
    }

    /// Completion tokens when the engine reported none.
    var fallbackCompletionTokens: Int { max(0, events - 1) }

    /// The counts to charge and to check a receipt against: the engine's, or what a cut stream had consumed.
    var counted: TokenUsage? {
        if let usage { return usage }
        guard events > 0 || promptFromTimings != nil else { return nil }
        return TokenUsage(promptTokens: promptFromTimings ?? 0, completionTokens: fallbackCompletionTokens)
    }
}
