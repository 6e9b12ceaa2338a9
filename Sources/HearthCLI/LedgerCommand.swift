import ArgumentParser
import Foundation
import HearthCore

/// `hearth ledger`: take a gateway's ledger away and check it without trusting the gateway.
struct LedgerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger",
        abstract: "Export a gateway's receipt ledger, or verify an export offline.",
        subcommands: [Export.self, Verify.self]
    )

    /// The export file: one JSON object per line, a header then the entries in order.
    static let format = "hearth-ledger-v1"

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write the whole ledger and its signed head to a file.")

        @OptionGroup var client: ClientOptions

        @Option(help: "The file to write (JSON lines: a header with the gateway id and signed head, then one entry a line).")
        var out: String

        func run() async throws {
            let gateway = GatewayClient(baseURL: client.baseURL)
            // The head first: every entry it counts is already written, so the export is at least that complete.
            let head = try await gateway.get("/api/ledger/head")
            guard let gatewayID = head["gateway"]?.stringValue, let signed = head["signed"]?.stringValue, let count = head["seq"]?.integerValue
            else { throw ValidationError("the gateway's ledger head is not readable") }
            var lines = [try Self.line(["format": .string(LedgerCommand.format), "gateway": .string(gatewayID), "head": .string(signed)])]
            var after: Int64 = 0
            while after < count {
                let page = try await gateway.get("/api/ledger/entries?after=\(after)&limit=1000")["data"]?.arrayValue ?? []
                guard !page.isEmpty else { break }
                for entry in page {
                    guard let seq = entry["seq"]?.integerValue, let bytes = entry["entry"]?.stringValue else { continue }
                    guard seq <= count else { break }
                    lines.append(try Self.line(["seq": .integer(seq), "entry": .string(bytes)]))
                    after = seq
                }
            }
            try (lines.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8)
            say("entries=\(lines.count - 1)")
            say("file=\(out)")
        }

        static func line(_ value: JSONValue) throws -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = .sortedKeys
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every signature and the whole hash chain of an export; name the first bad entry.",
            discussion: "Needs no network. Exits 0 when the ledger verifies, 1 when it does not."
        )

        @Argument(help: "The export from `hearth ledger export`.")
        var file: String

        @Option(help: "The gateway id you expect (from its join string); by default the one the file names.")
        var gateway: String?

        func run() throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read \(file)") }
            let lines = text.split(separator: "\n").map { try? JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
            guard let header = lines.first ?? nil, header["format"]?.stringValue == LedgerCommand.format,
                let named = header["gateway"]?.stringValue.flatMap(NodeID.init),
                let head = header["head"]?.stringValue.flatMap({ SignedToken.unbase64url($0) })
            else { throw ValidationError("\(file) is not a \(LedgerCommand.format) export") }
            let expected = try gateway.map { text in
                guard let id = NodeID(text) else { throw ValidationError("--gateway must be a NodeID") }
                return id
            }
            if let expected, expected != named {
                warn("FAILED: the export is from gateway \(named.short), not \(expected.short)")
                throw ExitCode(1)
            }
            var entries: [[UInt8]] = []
            for (index, line) in lines.dropFirst().enumerated() {
                guard let bytes = line?["entry"]?.stringValue.flatMap({ SignedToken.unbase64url($0) }) else {
                    warn("FAILED: entry \(index + 1): the line is not an entry")
                    throw ExitCode(1)
                }
                entries.append(Array(bytes))
            }
            do {
                let summary = try LedgerVerifier.verify(entries: entries, head: Array(head), gateway: expected ?? named)
                say(
                    "OK entries=\(summary.entries) prompt_tokens=\(summary.promptTokens) completion_tokens=\(summary.completionTokens) pooled=\(summary.pooledEntries)"
                )
                say("head=\(Hex.encode(summary.headHash))")
            } catch {
                warn("FAILED: \(error.description)")
                throw ExitCode(1)
            }
        }
    }
}
