import HearthCore

/// `Duration` in the units the gateway reports: milliseconds for usage rows, nanoseconds for Ollama's counters
/// (seconds come from HearthCore).
extension Duration {
    var milliseconds: Double { seconds * 1000 }

    var nanoseconds: UInt64 {
        UInt64(max(0, components.seconds)) * 1_000_000_000 + UInt64(max(0, components.attoseconds) / 1_000_000_000)
    }
}
