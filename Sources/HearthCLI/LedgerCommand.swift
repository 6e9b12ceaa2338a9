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
        static let configuration = CommandConfiguration(
            abstract: "Write a gateway's ledger chain (or every chain in its database) and its signed head to a file.",
            discussion: """
                Gateways sharing a database each keep their own chain. By default the export holds the chain of the \
                gateway asked; --chain names another, --all takes every chain. Only a chain's own gateway can sign \
                its head: ask each gateway for its own chain to prove that none was cut short.
                """
        )

        @OptionGroup var client: ClientOptions

        @Option(help: "The file to write (JSON lines: per chain, a header with the gateway id and signed head, then one entry a line).")
        var out: String

        @Option(help: "The chain to export: a gateway id (default: the chain of the gateway asked).")
        var chain: String?

        @Flag(help: "Export every chain in the gateway's database.")
        var all = false

        func validate() throws {
            if all && chain != nil { throw ValidationError("--chain and --all exclude each other") }
            if let chain, NodeID(chain) == nil { throw ValidationError("--chain must be a gateway id (64 hex characters)") }
        }

        func run() async throws {
            let gateway = GatewayClient(baseURL: client.baseURL)
            let chains: [String?] =
                all
                ? (try await gateway.get("/api/ledger/chains")["data"]?.arrayValue ?? []).compactMap { $0["gateway"]?.stringValue }
                : [chain]
            var lines: [String] = []
            var entries = 0
            for chain in chains {
                let section = try await Self.section(of: chain, from: gateway)
                lines += section
                entries += section.count - 1
            }
            try (lines.joined(separator: "\n") + "\n").write(toFile: out, atomically: true, encoding: .utf8)
            say("entries=\(entries)")
            if all { say("chains=\(chains.count)") }
            say("file=\(out)")
        }

        /// One chain: its header line, then its entries up to the head read first.
        static func section(of chain: String?, from gateway: GatewayClient) async throws -> [String] {
            let query = chain.map { "chain=\($0)&" } ?? ""
            // The head first: every entry it counts is already written, so the export is at least that complete.
            let head = try await gateway.get("/api/ledger/head?\(query)")
            guard let gatewayID = head["gateway"]?.stringValue, let count = head["seq"]?.integerValue else {
                throw ValidationError("the gateway's ledger head is not readable")
            }
            let signed: JSONValue = head["signed"]?.stringValue.map { .string($0) } ?? .null
            var lines = [try line(["format": .string(LedgerCommand.format), "gateway": .string(gatewayID), "head": signed])]
            var after: Int64 = 0
            while after < count {
                let page = try await gateway.get("/api/ledger/entries?\(query)after=\(after)&limit=1000")["data"]?.arrayValue ?? []
                guard !page.isEmpty else { break }
                for entry in page {
                    guard let seq = entry["seq"]?.integerValue, let bytes = entry["entry"]?.stringValue else { continue }
                    guard seq <= count else { break }
                    lines.append(try line(["seq": .integer(seq), "entry": .string(bytes)]))
                    after = seq
                }
            }
            return lines
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
            discussion: """
                Needs no network. Checks each chain in the file against its gateway's key, its signed head where the \
                export has one, and that no request is credited in two chains. Exits 0 when the ledger verifies, 1 \
                when it does not.
                """
        )

        @Argument(help: "The export from `hearth ledger export`.")
        var file: String

        @Option(help: "The gateway id you expect (from its join string): its chain must be in the file, with its signed head.")
        var gateway: String?

        struct Section {
            var gateway: NodeID
            var head: Data?
            var entries: [[UInt8]] = []
        }

        func run() throws {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read \(file)") }
            let expected = try gateway.map { text in
                guard let id = NodeID(text) else { throw ValidationError("--gateway must be a NodeID") }
                return id
            }
            var sections: [Section] = []
            for (index, raw) in text.split(separator: "\n").enumerated() {
                let line = try? JSONDecoder().decode(JSONValue.self, from: Data(raw.utf8))
                if line?["format"] != nil {
                    guard line?["format"]?.stringValue == LedgerCommand.format, let named = line?["gateway"]?.stringValue.flatMap(NodeID.init) else {
                        throw ValidationError("\(file) is not a \(LedgerCommand.format) export")
                    }
                    sections.append(Section(gateway: named, head: line?["head"]?.stringValue.flatMap { SignedToken.unbase64url($0) }))
                    continue
                }
                guard !sections.isEmpty else { throw ValidationError("\(file) is not a \(LedgerCommand.format) export") }
                guard let bytes = line?["entry"]?.stringValue.flatMap({ SignedToken.unbase64url($0) }) else {
                    warn("FAILED: chain \(sections[sections.count - 1].gateway.short), line \(index + 1): the line is not an entry")
                    throw ExitCode(1)
                }
                sections[sections.count - 1].entries.append(Array(bytes))
            }
            guard !sections.isEmpty else { throw ValidationError("\(file) is not a \(LedgerCommand.format) export") }
            if let expected, !sections.contains(where: { $0.gateway == expected && $0.head != nil }) {
                let named = sections.map(\.gateway.short).joined(separator: ", ")
                warn("FAILED: the export has no chain signed by gateway \(expected.short) (it has \(named))")
                throw ExitCode(1)
            }
            var summaries: [(NodeID, LedgerVerifier.Summary)] = []
            var credited: [String: NodeID] = [:]
            for section in sections {
                let summary: LedgerVerifier.Summary
                do {
                    summary = try LedgerVerifier.verify(entries: section.entries, head: section.head.map(Array.init), gateway: section.gateway)
                } catch {
                    warn("FAILED: \(sections.count > 1 ? "chain \(section.gateway.short), " : "")\(error.description)")
                    throw ExitCode(1)
                }
                for request in summary.requestIDs {
                    if let first = credited[request] {
                        warn("FAILED: request \(request) is credited in two chains (\(first.short) and \(section.gateway.short))")
                        throw ExitCode(1)
                    }
                    credited[request] = section.gateway
                }
                summaries.append((section.gateway, summary))
            }
            let total = summaries.map(\.1)
            say(
                "OK entries=\(total.map(\.entries).reduce(0, +)) prompt_tokens=\(total.map(\.promptTokens).reduce(0, +)) "
                    + "completion_tokens=\(total.map(\.completionTokens).reduce(0, +)) pooled=\(total.map(\.pooledEntries).reduce(0, +))"
                    + (summaries.count > 1 ? " chains=\(summaries.count)" : "")
            )
            for (gateway, summary) in summaries {
                let signed = summary.signedHead ? "signed" : "unsigned (only gateway \(gateway.short) can sign it: export from it to prove the end)"
                say("chain=\(gateway.rawValue) entries=\(summary.entries) head=\(Hex.encode(summary.headHash)) \(signed)")
            }
        }
    }
}
