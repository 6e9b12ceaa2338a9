import ArgumentParser
import Foundation
import HearthCore
import HearthNode

/// Which catalog a command uses: the built-in one, extended or replaced by the operator's file.
struct CatalogOptions: ParsableArguments {
    @Option(
        help: """
            An operator catalog file: its entries extend the built-in catalog, or replace it with "replaceBuiltin": true \
            (default: catalog.json in the data folder, if present).
            """
    )
    var catalog: String?

    /// The file this command reads and `hearth catalog pin` writes.
    func path(dataDirectory: String) -> String {
        catalog ?? (dataDirectory as NSString).appendingPathComponent("catalog.json")
    }

    /// The built-in catalog with the operator's file applied. A file named with `--catalog` must exist.
    func load(dataDirectory: String) throws -> Catalog {
        Self.effective(try operatorFile(dataDirectory: dataDirectory))
    }

    /// The catalog in effect with `file`: it extends the built-in one, or replaces it.
    static func effective(_ file: (catalog: Catalog, replacesBuiltin: Bool)?) -> Catalog {
        guard let file else { return .builtin }
        return file.replacesBuiltin ? file.catalog : Catalog.builtin.merged(with: file.catalog)
    }

    /// The operator's file as it stands, `nil` when there is none (and `--catalog` did not name one).
    func operatorFile(dataDirectory: String) throws -> (catalog: Catalog, replacesBuiltin: Bool)? {
        let path = path(dataDirectory: dataDirectory)
        guard let data = FileManager.default.contents(atPath: path) else {
            if catalog != nil { throw ValidationError("cannot read the catalog file \(path)") }
            return nil
        }
        do {
            return try Catalog.decode(data)
        } catch {
            throw ValidationError("the catalog file \(path) is not usable: \(error.description)")
        }
    }
}

/// `hearth catalog`: the models this network may run, and pinning one after checking it.
struct CatalogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "catalog",
        abstract: "List the model catalog, print it as a file, or pin an entry's SHA-256.",
        discussion: """
            Only pinned entries (with a sha256) can ever be loaded; the rest are listed for capacity planning. The \
            operator's catalog file (default: <data-dir>/gateway/catalog.json) extends the built-in catalog.
            """,
        subcommands: [List.self, Show.self, Pin.self],
        defaultSubcommand: List.self
    )

    /// Options every catalog subcommand shares.
    struct Location: ParsableArguments {
        @OptionGroup var options: CatalogOptions

        @Option(help: "The gateway's data folder (env: HEARTH_DATA_DIR; default: the per-user data folder + /gateway).")
        var dataDir: String?

        var directory: String { dataDir ?? CommandEnvironment().defaultDataDirectory + "/gateway" }
        func load() throws -> Catalog { try options.load(dataDirectory: directory) }
        func operatorFile() throws -> (catalog: Catalog, replacesBuiltin: Bool)? { try options.operatorFile(dataDirectory: directory) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per entry: id, tier, parameters, size, and whether it is pinned.")
        @OptionGroup var location: Location

        func run() throws {
            let columns = [40, 8, 10, 11]
            say(row(["MODEL", "TIER", "PARAMS", "SIZE", "PINNED"], columns))
            for entry in try location.load().entries {
                let pinned = entry.sha256.map { String($0.hex.prefix(16)) } ?? "no"
                say(row([entry.id.rawValue, entry.tier.rawValue, Self.parameters(entry.parameters), entry.sizeBytes.binaryBytes, pinned], columns))
            }
        }

        static func parameters(_ count: UInt64) -> String {
            count >= 1_000_000_000 ? "\((Double(count) / 1e8).rounded() / 10)B" : "\(count / 1_000_000)M"
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the catalog in effect as a catalog file, to start an operator's own.")
        @OptionGroup var location: Location

        func run() throws {
            FileHandle.standardOutput.write(try location.load().encoded())
            say("")
        }
    }

    struct Pin: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pin a catalog entry to the SHA-256 you checked, so nodes may load it.",
            discussion: """
                Take the hash from an authoritative source (the publisher's listing) or from a file you verified, never \
                from a client. The pin is written to the operator's catalog file; restart the gateway and nodes to apply it.
                """
        )
        @OptionGroup var location: Location

        @Argument(help: "The catalog id, e.g. qwen2.5-7b-instruct:q8_0.")
        var model: String

        @Option(help: "The file's SHA-256 (64 hex characters).")
        var sha256: String

        @Option(help: "The file's exact size in bytes, when known.")
        var size: UInt64?

        func run() throws {
            guard let id = ModelID(model) else { throw ValidationError("'\(model)' is not a valid model id") }
            guard let digest = SHA256Digest(hex: sha256) else { throw ValidationError("--sha256 must be 64 hex characters") }
            let path = location.options.path(dataDirectory: location.directory)
            let file = try location.operatorFile()
            guard var pinned = CatalogOptions.effective(file)[id] else {
                throw ValidationError("the catalog has no model \(id); `hearth catalog list` shows the ids")
            }
            // Only the operator's file changes: the pinned entry is written there, replacing any earlier copy.
            pinned.sha256 = digest
            if let size { pinned.sizeBytes = size }
            let overlay = (file?.catalog ?? Catalog.empty).merged(with: try Catalog(entries: [pinned]))
            let replaces = file?.replacesBuiltin ?? false
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try overlay.encoded(replacesBuiltin: replaces).write(to: URL(fileURLWithPath: path), options: .atomic)
            say("pinned \(id) to \(digest.hex) in \(path)")
        }
    }
}

/// `hearth size MODEL --context N`: the memory a model needs, and which nodes could serve it.
struct SizeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "size",
        abstract: "Estimate the memory to serve a model (a catalog id or a GGUF file) and say which nodes could serve it.",
        discussion: """
            weights + KV cache (2 × layers × KV heads × head dim × context × slots × 2 bytes) + compute buffer + runtime, \
            as llama.cpp allocates them on the CPU. Nodes come from the gateway's capacity plan, when it answers.
            """
    )

    @Argument(help: "A catalog id (e.g. smollm2-135m-instruct:q4_1) or the path of a GGUF file.")
    var model: String

    @Option(help: "Context in tokens per request slot.")
    var context: Int = 4096

    @Option(help: "Request slots served at once (llama-server --parallel).")
    var parallel: Int = 1

    @OptionGroup var location: CatalogCommand.Location
    @OptionGroup var client: ClientOptions

    func validate() throws {
        guard context >= 1, parallel >= 1 else { throw ValidationError("--context and --parallel must be at least 1") }
    }

    func run() async throws {
        let estimate: MemoryEstimate
        var catalogID: ModelID?
        if FileManager.default.fileExists(atPath: model) {
            let header: GGUFHeader
            do {
                header = try await GGUFSource.header(atPath: model)
            } catch let error as GGUFSourceError {
                throw ValidationError(error.description)
            }
            guard let shape = ModelShape(header: header) else {
                throw ValidationError("\(model) does not state its layers, heads and embedding size")
            }
            let size = ModelStore.fileSize(atPath: model)
            estimate = ModelSizer.estimate(weightsBytes: size - min(size, header.dataOffset), shape: shape, context: context, parallel: parallel)
        } else {
            guard let id = ModelID(model), let entry = try location.load().resolve(id, includeUnpinned: true) else {
                throw ValidationError("'\(model)' is neither a file nor a catalog id; `hearth catalog list` shows the ids")
            }
            catalogID = entry.id
            estimate = ModelSizer.estimate(entry, context: context, parallel: parallel)
        }
        say("model      \(catalogID?.rawValue ?? model)")
        say("context    \(context) tokens × \(parallel) slot\(parallel == 1 ? "" : "s")")
        say("weights    \(estimate.weightsBytes.binaryBytes)")
        say("kv cache   \(estimate.kvCacheBytes.binaryBytes)")
        say("compute    \(estimate.computeBytes.binaryBytes)")
        say("runtime    \(estimate.runtimeBytes.binaryBytes)")
        say("total      \(estimate.totalBytes.binaryBytes)")
        guard let catalogID else { return }
        let path = "/api/capacity?context=\(context)&parallel=\(parallel)"
        guard let plan = try? await GatewayClient(baseURL: client.baseURL, quiet: true).get(path) else {
            say("nodes      unknown: no gateway answered at \(client.baseURL)")
            return
        }
        let verdict = plan["data"]?.arrayValue?.first { $0["model"]?.stringValue == catalogID.rawValue }
        let nodes = (verdict?["status"] == "pool" ? verdict?["pool"] : verdict?["nodes"])?.arrayValue?.compactMap(\.stringValue) ?? []
        say("nodes      \(verdict?["summary"]?.stringValue ?? "the gateway's catalog does not list it")")
        for node in nodes { say("           \(node.prefix(12))") }
    }
}

/// Pads each field to its column width; the last field is not padded.
func row(_ fields: [String], _ widths: [Int]) -> String {
    zip(fields, widths).map { $0.padding(toLength: max($1, $0.count + 1), withPad: " ", startingAt: 0) }.joined()
        + fields.dropFirst(widths.count).joined(separator: " ")
}
