package import Foundation

/// What kind of model an entry is, for listings and planning.
package enum ModelTier: String, Codable, Sendable, CaseIterable {
    case tiny, small, medium, large
    case moe = "MoE"
    case embed, vision, code
}

/// The architecture facts the sizer needs, as the GGUF header states them.
package struct ModelShape: Codable, Sendable, Equatable {
    /// The architecture (`general.architecture`, e.g. `llama`, `qwen2`), which prefixes the header's shape keys; what
    /// Ollama's API calls a model's family. Absent from operators' catalogs written before it was asked for.
    package var architecture: String?
    /// Transformer blocks (`<arch>.block_count`).
    package var layers: Int
    /// Key/value heads (`<arch>.attention.head_count_kv`).
    var kvHeads: Int
    /// Width of one head (`<arch>.attention.key_length`, or embedding / heads).
    var headDim: Int
    /// Hidden size (`<arch>.embedding_length`).
    package var embedding: Int
    /// Tokens in the vocabulary (`tokenizer.ggml.tokens`), when the catalog knows it: a node claiming a token id at or
    /// past it is not serving this model (spot checks).
    package var vocabulary: Int?

    package init(layers: Int, kvHeads: Int, headDim: Int, embedding: Int, vocabulary: Int? = nil, architecture: String? = nil) {
        self.architecture = architecture
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.embedding = embedding
        self.vocabulary = vocabulary
    }
}

/// One model in the catalog. An entry with a `sha256` is pinned: it is on the allowlist and nodes may load exactly
/// that file. An entry without one must say `"pinned": false`; it is shown for capacity planning and never loaded.
package struct CatalogEntry: Codable, Sendable, Equatable {
    /// The exact name clients use, `<model>:<quantization>` (e.g. `smollm2-135m-instruct:q4_1`).
    package var id: ModelID
    package var name: String
    package var family: String
    /// Parameter count.
    package var parameters: UInt64
    package var tier: ModelTier
    /// GGUF quantization, as llama.cpp names it (`Q8_0`, `Q4_K_M`).
    package var quantization: String
    /// Longest context the model was trained for, in tokens.
    package var contextLength: Int
    package var licence: String
    /// Size of the GGUF file in bytes; the publisher's listing until the entry is pinned.
    package var sizeBytes: UInt64
    package var shape: ModelShape
    /// Where the file can be fetched (mirrors of one file). `pypi:` sources are provisioned by the installer.
    package var sources: [String]
    /// The file's SHA-256, from an authoritative source. `nil` only when the entry is marked not pinned.
    package var sha256: SHA256Digest?
    /// A lower quantization that the operator approved for pools too small for the Q8_0.
    var approvedForConstrainedPools: Bool

    package init(
        id: ModelID,
        name: String,
        family: String,
        parameters: UInt64,
        tier: ModelTier,
        quantization: String,
        contextLength: Int,
        licence: String,
        sizeBytes: UInt64,
        shape: ModelShape,
        sources: [String],
        sha256: SHA256Digest?,
        approvedForConstrainedPools: Bool = false
    ) {
        self.id = id
        self.name = name
        self.family = family
        self.parameters = parameters
        self.tier = tier
        self.quantization = quantization
        self.contextLength = contextLength
        self.licence = licence
        self.sizeBytes = sizeBytes
        self.shape = shape
        self.sources = sources
        self.sha256 = sha256
        self.approvedForConstrainedPools = approvedForConstrainedPools
    }

    /// On the allowlist: a node may load this entry's file.
    var isPinned: Bool { sha256 != nil }

    /// The name without the quantization (`smollm2-135m-instruct` for `smollm2-135m-instruct:q4_1`).
    var baseName: String { Self.baseName(of: id) }

    static func baseName(of id: ModelID) -> String {
        guard let colon = id.rawValue.lastIndex(of: ":") else { return id.rawValue }
        return String(id.rawValue[..<colon])
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, family, parameters, tier, quantization, contextLength, licence, sizeBytes, shape, sources, sha256, pinned
        case approvedForConstrainedPools
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(ModelID.self, forKey: .id)
        name = try container.decode(String.self, forKey: .name)
        family = try container.decode(String.self, forKey: .family)
        parameters = try container.decode(UInt64.self, forKey: .parameters)
        tier = try container.decode(ModelTier.self, forKey: .tier)
        quantization = try container.decode(String.self, forKey: .quantization)
        contextLength = try container.decode(Int.self, forKey: .contextLength)
        licence = try container.decode(String.self, forKey: .licence)
        sizeBytes = try container.decode(UInt64.self, forKey: .sizeBytes)
        shape = try container.decode(ModelShape.self, forKey: .shape)
        let facts = [shape.layers, shape.kvHeads, shape.headDim, shape.embedding, contextLength]
        guard facts.allSatisfy({ (1...(1 << 24)).contains($0) }) else {
            throw DecodingError.dataCorruptedError(
                forKey: .shape,
                in: container,
                debugDescription: "\(id): layers, KV heads, head dim, embedding and context must be from 1 to 16777216"
            )
        }
        sources = try container.decode([String].self, forKey: .sources)
        sha256 = try container.decodeIfPresent(SHA256Digest.self, forKey: .sha256)
        approvedForConstrainedPools = try container.decodeIfPresent(Bool.self, forKey: .approvedForConstrainedPools) ?? false
        let pinned = try container.decodeIfPresent(Bool.self, forKey: .pinned)
        // Being unpinned must be said, so that a forgotten hash is never mistaken for a deliberate choice.
        switch (sha256, pinned) {
        case (nil, false?), (_?, nil), (_?, true?): break
        case (nil, _):
            throw DecodingError.dataCorruptedError(
                forKey: .sha256,
                in: container,
                debugDescription: "\(id) has no sha256; pin it or mark it \"pinned\": false"
            )
        case (_?, false?):
            throw DecodingError.dataCorruptedError(forKey: .pinned, in: container, debugDescription: "\(id) has a sha256 but says \"pinned\": false")
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(family, forKey: .family)
        try container.encode(parameters, forKey: .parameters)
        try container.encode(tier, forKey: .tier)
        try container.encode(quantization, forKey: .quantization)
        try container.encode(contextLength, forKey: .contextLength)
        try container.encode(licence, forKey: .licence)
        try container.encode(sizeBytes, forKey: .sizeBytes)
        try container.encode(shape, forKey: .shape)
        try container.encode(sources, forKey: .sources)
        try container.encodeIfPresent(sha256, forKey: .sha256)
        try container.encode(isPinned, forKey: .pinned)
        if approvedForConstrainedPools { try container.encode(true, forKey: .approvedForConstrainedPools) }
    }
}

/// Why a catalog file was refused.
package struct CatalogError: Error, Sendable, Equatable, CustomStringConvertible {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// The models a gateway or node knows: Hearth's built-in list, extended or replaced by the operator's file.
package struct Catalog: Sendable, Equatable {
    package private(set) var entries: [CatalogEntry]

    /// - Throws: `CatalogError` when two entries share an id.
    package init(entries: [CatalogEntry]) throws(CatalogError) {
        var seen = Set<ModelID>()
        for entry in entries where !seen.insert(entry.id).inserted {
            throw CatalogError("the catalog lists \(entry.id) twice")
        }
        self.entries = entries
    }

    /// The file format: `{"version": 1, "replaceBuiltin": false, "models": [...]}`.
    struct File: Codable {
        var version: Int
        var replaceBuiltin: Bool?
        var models: [CatalogEntry]
    }

    /// Reads a catalog file.
    /// - Throws: `CatalogError` naming what is wrong.
    package static func decode(_ data: Data) throws(CatalogError) -> (catalog: Catalog, replacesBuiltin: Bool) {
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch let DecodingError.dataCorrupted(context) {
            throw CatalogError(Self.explain(context))
        } catch let DecodingError.keyNotFound(key, context) {
            throw CatalogError("\(Self.path(context.codingPath + [key])) is missing")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw CatalogError("\(Self.path(context.codingPath)) has the wrong type")
        } catch {
            throw CatalogError("not a catalog: \(error)")
        }
        guard file.version == 1 else { throw CatalogError("catalog version \(file.version) is not supported (1 is)") }
        return (try Catalog(entries: file.models), file.replaceBuiltin ?? false)
    }

    /// The catalog as a file, entries in order.
    package func encoded(replacesBuiltin: Bool = false) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let file = File(version: 1, replaceBuiltin: replacesBuiltin ? true : nil, models: entries)
        return (try? encoder.encode(file)) ?? Data()
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: ["."])
    }

    private static func explain(_ context: DecodingError.Context) -> String {
        let at = path(context.codingPath)
        return at.isEmpty ? "not valid JSON: \(context.debugDescription)" : "\(at): \(context.debugDescription)"
    }

    /// This catalog with `overlay`'s entries added, an entry with the same id replacing the one here in place.
    package func merged(with overlay: Catalog) -> Catalog {
        var entries = self.entries
        for entry in overlay.entries {
            if let index = entries.firstIndex(where: { $0.id == entry.id }) {
                entries[index] = entry
            } else {
                entries.append(entry)
            }
        }
        return Catalog(uncheckedEntries: entries)
    }

    init(uncheckedEntries: [CatalogEntry]) {
        entries = uncheckedEntries
    }

    /// A catalog with no entries.
    package static let empty = Catalog(uncheckedEntries: [])

    package subscript(id: ModelID) -> CatalogEntry? {
        entries.first { $0.id == id }
    }

    /// The pinned entries: the allowlist.
    package var allowlist: [CatalogEntry] { entries.filter(\.isPinned) }

    /// Whether a file with `sha256` may be loaded as `id`: only when the catalog pins exactly that hash for it.
    package func allows(_ id: ModelID, sha256: SHA256Digest) -> Bool {
        self[id]?.sha256 == sha256
    }

    /// The entry a client's model name stands for. An exact id wins. A name without quantization
    /// (`qwen2.5-7b-instruct`) picks among the pinned entries of that name: Q8_0 first; a lower quantization only
    /// when no Q8_0 is pinned, or when it is approved for constrained pools and the Q8_0 does not `fit` while it does.
    /// Planning may look at unpinned entries too (`includeUnpinned`); loading never does. Ollama's default tag
    /// (`qwen2.5-7b-instruct:latest`, what its clients make of a name without one) is read as no quantization.
    package func resolve(_ name: ModelID, includeUnpinned: Bool = false, fits: (CatalogEntry) -> Bool = { _ in true }) -> CatalogEntry? {
        if let exact = self[name] { return exact }
        let baseName = name.rawValue.hasSuffix(":latest") ? CatalogEntry.baseName(of: name) : name.rawValue
        let candidates = entries.filter { ($0.isPinned || includeUnpinned) && $0.baseName == baseName }
        let q8 = candidates.first { $0.quantization.uppercased() == "Q8_0" }
        if let q8 {
            if fits(q8) { return q8 }
            return candidates.filter { $0.approvedForConstrainedPools && fits($0) }.max { $0.sizeBytes < $1.sizeBytes } ?? q8
        }
        // No Q8_0: the largest (least quantized) pinned file that fits, else the largest.
        let bySize = candidates.sorted { $0.sizeBytes > $1.sizeBytes }
        return bySize.first(where: fits) ?? bySize.first
    }

    /// A copy with `id` pinned to `sha256` (and `sizeBytes`, when known).
    /// - Throws: `CatalogError` when the catalog has no such entry.
    func pinning(_ id: ModelID, sha256: SHA256Digest, sizeBytes: UInt64? = nil) throws(CatalogError) -> Catalog {
        guard let index = entries.firstIndex(where: { $0.id == id }) else {
            throw CatalogError("the catalog has no model \(id)")
        }
        var entries = entries
        entries[index].sha256 = sha256
        if let sizeBytes { entries[index].sizeBytes = sizeBytes }
        return Catalog(uncheckedEntries: entries)
    }
}
