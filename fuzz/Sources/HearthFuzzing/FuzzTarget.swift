/// One parser Hearth feeds bytes from outside, with the properties every input must keep.
///
/// The same checks run in two places: `hearth-fuzz` (libFuzzer, built by `fuzz/run.sh`) crashes on a broken property,
/// and `FuzzCorpusTests` replays every committed corpus file through them in the ordinary test run.
package struct FuzzTarget: Sendable {
    /// Also the name of the target's folder under `fuzz/`.
    package let name: String
    /// What the parser is, for `fuzz/README.md` and `--help`-style listings.
    package let summary: String
    /// Checks one input: `nil` when the parser handled it (accepted or refused it cleanly), else the property that
    /// broke. A parser that traps on an input crashes here too, which is what the fuzzer looks for.
    package let check: @Sendable ([UInt8]) -> String?

    package init(name: String, summary: String, check: @escaping @Sendable ([UInt8]) -> String?) {
        self.name = name
        self.summary = summary
        self.check = check
    }

    package static let all: [FuzzTarget] = [
        .cbor, .cose, .receipt, .token, .completion, .ollama, .sse, .catalog, .report, .gguf,
    ]

    package static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// Splits fuzz input into a few control bytes and the rest, so one input can also choose how it is fed.
struct FuzzInput {
    private(set) var bytes: ArraySlice<UInt8>

    init(_ bytes: [UInt8]) { self.bytes = bytes[...] }

    /// The next byte, or 0 when none is left.
    mutating func byte() -> UInt8 {
        guard let first = bytes.first else { return 0 }
        bytes = bytes.dropFirst()
        return first
    }
}
