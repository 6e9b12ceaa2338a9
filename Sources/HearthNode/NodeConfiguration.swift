import Foundation
package import HearthCore

/// Everything a node needs to start. Every field has a default.
package struct NodeConfiguration: Sendable {
    /// The gateway to dial and the key it must prove (`host:port#gateway-id`).
    package var join: JoinAddress?
    /// Resolves the join address on each dial; overrides `join`. `hearth up` uses it because its gateway's mesh
    /// port is known only once it listens.
    package var joinProvider: (@Sendable () async -> JoinAddress)?
    /// The owner's device certificate for this node's key (`hearth keys certify-device`), so its work counts for
    /// their account.
    package var deviceCertificate: DeviceCertificate?
    /// An invite token, needed the first time the node joins a private network.
    package var invite: String?
    /// TCP services on 127.0.0.1 the gateway may open byte streams to, by name (e.g. `rpc` → a ggml-rpc-server
    /// port). Nothing else on the node is reachable through the link.
    package var tunnelServices: [String: Int] = [:]
    /// Port of the owner's dashboard on 127.0.0.1 (0 picks one); `nil` runs none. It never listens elsewhere.
    package var dashboardPort: Int? = 0
    /// Folder for the node's identity and state.
    package var dataDirectory: String = "."
    /// A name for this node in listings; the host name by default.
    package var name: String = "node"
    /// The models to serve, each with its own engine, in order of preference: at start the node loads them in this
    /// order while they fit in its memory limit; the rest load on their first request, evicting idle ones.
    package var models: [ModelSpec] = []
    /// The catalog: the node refuses any model whose id and hash it does not pin.
    package var catalog: Catalog = .builtin
    /// The owner's limits.
    package var limits: NodeLimits = NodeLimits(threads: 2, contextSize: 2048, parallelSlots: 2)
    /// The `llama-server` binary to run.
    package var llamaServerPath: String = "llama-server"
    /// Work that must finish before the first engine starts, such as building llama.cpp and fetching the default
    /// model. It runs once, inside the node's lifetime: the node is linked meanwhile and reports its engines as
    /// loading, so a long build or download never hides it from the gateway.
    package var prepare: (@Sendable () async throws -> Void)?
    /// Further `llama-server` arguments, as the owner gives them.
    package var extraEngineArguments: [String] = []
    /// Every engine also answers `/v1/embeddings` (llama-server `--embeddings --pooling mean`). Catalog embedding
    /// models (tier `embed`) always do.
    package var embeddings = false
    /// The link counts as dead, and the node dials again, when the gateway has not polled for this long.
    package var linkTimeout: Duration = .seconds(30)
    /// Longest wait for an engine to report healthy before it counts as failed and is restarted.
    var engineStartTimeout: Duration = .seconds(120)
    /// Longest wait for streams in flight when the node shuts down: long enough for a long answer on a CPU.
    package var drainTimeout: Duration = .seconds(120)
    /// How engines are confined (`EngineSandbox`); `--no-sandbox` turns it off.
    package var sandbox = SandboxSettings()
    /// Where model files are kept (`<sha256>.gguf`), for pools' heads when the node serves no model alone.
    package var modelsDirectory: String?
    /// What the node lends to pools (out of `limits.memoryBytes`); `nil` lends nothing.
    package var pool: PoolSettings?
    /// The owner's own OpenAI-compatible server, whose models the node serves beside (or instead of) its engines.
    package var backend: BackendSettings?
    /// Gives the process's code pages back once no request has come for a while (`IdleCodeRelease`). `hearth up` turns
    /// it off: its gateway's release, in the same process, sees every request the node gets and more.
    package var releasesIdleCode = true

    package init() {}

    /// The join address for the next dial.
    func resolveJoin() async -> JoinAddress? {
        if let joinProvider { return await joinProvider() }
        return join
    }

    /// Returns a copy with `change` applied.
    package func with(_ change: (inout NodeConfiguration) -> Void) -> NodeConfiguration {
        var copy = self
        change(&copy)
        return copy
    }
}

/// One model the node serves: the GGUF file, its expected SHA-256, and the names clients use.
package struct ModelSpec: Sendable, Equatable, Codable {
    package var id: ModelID
    var aliases: [ModelID]
    package var path: String
    package var sha256: SHA256Digest
    /// The catalog entry the file comes from: where to download it when it is missing.
    var entry: CatalogEntry?
    /// What the engine needs in memory (the sizer's estimate at the node's context and slots); 0 when unknown.
    var memoryBytes: UInt64

    /// Whether this model's engine serves embeddings: an embedding model always, any other when the owner asks.
    func servesEmbeddings(forAll: Bool) -> Bool {
        forAll || entry?.tier == .embed
    }

    init(id: ModelID, aliases: [ModelID] = [], path: String, sha256: SHA256Digest, entry: CatalogEntry? = nil, memoryBytes: UInt64 = 0) {
        self.id = id
        self.aliases = aliases
        self.path = path
        self.sha256 = sha256
        self.entry = entry
        self.memoryBytes = memoryBytes
    }

    /// The spec of a pinned catalog entry whose file is (or will be downloaded) in `directory` as `<sha256>.gguf`,
    /// sized for `limits`; `nil` when the entry is not pinned.
    package init?(entry: CatalogEntry, directory: String, limits: NodeLimits, aliases: [ModelID] = []) {
        guard let sha256 = entry.sha256 else { return nil }
        let estimate = ModelSizer.estimate(entry, context: limits.contextSize, parallel: limits.parallelSlots)
        self.init(
            id: entry.id,
            aliases: aliases,
            path: (directory as NSString).appendingPathComponent("\(sha256.hex).gguf"),
            sha256: sha256,
            entry: entry,
            memoryBytes: estimate.totalBytes
        )
    }
}

/// The owner's own OpenAI-compatible server (Ollama, vLLM, LM Studio, a llama-server of their own) and the names of
/// its models in the catalog (`--backend`, `--backend-model`).
package struct BackendSettings: Sendable, Equatable {
    /// One of the server's models, served under a catalog id.
    package struct Mapping: Sendable, Equatable {
        /// The server's name for it (`/v1/models`).
        var name: String
        /// The catalog id whose pinned sha256 the owner states the server serves.
        var id: ModelID

        package init(name: String, id: ModelID) {
            self.name = name
            self.id = id
        }
    }

    /// The API's base URL, up to and including `/v1` (`http://127.0.0.1:11434/v1`).
    var baseURL: String
    var models: [Mapping]
    /// The key the server asks of its clients (vLLM's `--api-key`, LM Studio's, a proxy's), sent with every request as
    /// `Authorization: Bearer`; never logged or reported.
    package var apiKey: String?
    /// Scheme, host and port (and any path before `/v1`) of a base URL: where the server's other routes are
    /// (`/v1/chat/completions`, Ollama's `/api/show`, llama-server's `/props`).
    static func root(of baseURL: String) -> String {
        String(baseURL.dropLast("/v1".count))
    }

    /// How often the node asks the server which models it has (and checks their files again).
    package var checkInterval: Duration = .seconds(15)
    /// Authorities an `https` server's certificate may come from beside the system's roots (`--backend-ca-file`).
    package var trust: BackendTrust?

    package init(baseURL: String, models: [Mapping]) {
        self.baseURL = baseURL
        self.models = models
    }

    /// `openai:URL`, as `--backend` takes it; the URL must be http(s) and end in `/v1`.
    package static func parse(_ text: String) throws(BackendSettingsError) -> String {
        guard text.hasPrefix("openai:") else {
            throw BackendSettingsError("--backend takes openai:URL (e.g. openai:http://127.0.0.1:11434/v1), not \(text)")
        }
        var url = String(text.dropFirst("openai:".count))
        while url.hasSuffix("/") { url.removeLast() }
        guard let parsed = URL(string: url), ["http", "https"].contains(parsed.scheme ?? ""), parsed.host?.isEmpty == false else {
            throw BackendSettingsError("--backend needs an http(s) URL, not \(url)")
        }
        guard url.hasSuffix("/v1") else {
            throw BackendSettingsError("--backend's URL must end in /v1, where the OpenAI API is (\(url)/v1?)")
        }
        guard parsed.user == nil, parsed.password == nil else {
            throw BackendSettingsError(
                "--backend's URL names a user or password, which logs and `ps` would show: give the server's key with --backend-api-key-file instead"
            )
        }
        return url
    }

    /// A key as a file or the environment gives it: surrounding whitespace dropped; refused when empty, longer than
    /// 4 KiB or holding anything but visible ASCII (it goes into a header as it is).
    package static func apiKey(_ text: String, from source: String) throws(BackendSettingsError) -> String {
        let key = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !key.isEmpty else { throw BackendSettingsError("\(source) holds no key") }
        guard key.utf8.count <= 4096, key.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw BackendSettingsError("\(source) must hold one key of visible ASCII characters (no spaces or line breaks inside), at most 4 KiB")
        }
        return key
    }

    /// `NAME=CATALOG_ID`, as `--backend-model` takes it.
    package static func mapping(_ text: String) throws(BackendSettingsError) -> (name: String, id: String) {
        guard let equals = text.lastIndex(of: "="), equals != text.startIndex, text.index(after: equals) != text.endIndex else {
            throw BackendSettingsError("--backend-model takes NAME=CATALOG_ID (the server's name, then the catalog id), not \(text)")
        }
        return (String(text[..<equals]), String(text[text.index(after: equals)...]))
    }
}

package struct BackendSettingsError: Error, CustomStringConvertible, Sendable {
    package var description: String
    init(_ description: String) { self.description = description }
}
