import ArgumentParser
import Foundation
import HearthCore
import HearthNode
import NIOFoundationEssentialsCompat

/// Node settings shared by `hearth node` and `hearth up`. Flags win over environment variables, which win over
/// the config file, which wins over the defaults.
struct NodeOptions: ParsableArguments {
    @Option(
        name: .customLong("model"),
        help: """
            A catalog model to serve (repeatable; default: the embedded default model). The first ones load at start \
            while they fit in --memory; the rest load on their first request, evicting idle ones. Only pinned entries \
            can be served (`hearth catalog list`).
            """
    )
    var models: [String] = []

    @Option(name: .customLong("alias"), help: "Another exact name for the first model (repeatable).")
    var aliases: [String] = []

    @Option(help: "Where model files live, named <sha256>.gguf; missing ones are downloaded here (default: the cache's models folder).")
    var modelsDir: String?

    @Option(help: "Memory the node's models may use together, e.g. 6GiB or 512MiB (default: 80% of what is available at start).")
    var memory: String?

    @Option(
        help: """
            Memory lent to pools (models split over several nodes), out of --memory: a size (2GiB) or a share (25%). \
            0 lends nothing (the default for `hearth node`; `hearth up` lends 25%).
            """
    )
    var poolMemory: String?

    @Flag(help: "Serve no model alone: only lend --pool-memory to pools (needs --pool-memory).")
    var poolOnly = false

    @Option(help: "Use this ggml-rpc-server for pool work (env: HEARTH_RPC_SERVER; default: beside llama-server).")
    var rpcServer: String?

    @Option(help: "CPU threads for the engine (default: all cores).")
    var threads: Int?

    @Option(help: "Context size in tokens for each request slot.")
    var ctxSize: Int?

    @Option(help: "Requests the engine serves at once.")
    var parallel: Int?

    @Option(
        name: .customLong("engine-arg"),
        parsing: .unconditionalSingleValue,
        help: """
            An argument passed to every llama-server after Hearth's own (repeatable), e.g. --engine-arg=-ub \
            --engine-arg=1 for bit-exact continuations. Hearth's sizing does not know what it does.
            """
    )
    var engineArguments: [String] = []

    @Flag(
        help: """
            Serve embeddings (/v1/embeddings, Ollama's /api/embed) from every model too, with mean pooling. Catalog \
            embedding models always serve them. With --backend, this says that your server answers /v1/embeddings \
            for every model mapped (with its own pooling: mean keeps its vectors comparable with other nodes').
            """
    )
    var embeddings = false

    @Option(
        help: """
            Serve models of your own OpenAI-compatible server (Ollama, vLLM, LM Studio, your own llama-server) through \
            this node: openai:URL, the URL ending in /v1, e.g. openai:http://127.0.0.1:11434/v1. Map its models with \
            --backend-model; without --model the node then runs no engine of its own.
            """
    )
    var backend: String?

    @Option(
        name: .customLong("backend-model"),
        help: """
            NAME=CATALOG_ID (repeatable): serve the server's model NAME as the pinned catalog model CATALOG_ID, stating \
            that it serves that file. The node checks the file where the server lets it (Ollama's blob digest, the \
            file llama-server names); a model it cannot check is reported unverified, and gateways route to it only \
            when their operator allows unverified backends. One found serving another file is not served.
            """
    )
    var backendModels: [String] = []

    @Option(
        help:
            "How often the node asks your server which models it has and checks their files again (e.g. 15s). A look left unanswered is tried again within 3 s; the models are marked failed only when that one goes unanswered too. A request your server refuses to connect has the node look at once."
    )
    var backendCheckInterval: String = "15s"

    @Option(
        help: """
            A file holding the key your server asks of its clients (vLLM's --api-key, LM Studio's, a proxy's), sent \
            with every request as Authorization: Bearer (env: HEARTH_BACKEND_API_KEY). A file, so that the key is in \
            neither `ps` nor your shell's history; it is never logged or reported.
            """
    )
    var backendApiKeyFile: String?

    @Option(
        help: """
            A PEM file of certificate authorities to trust for an https --backend beside the system's roots: a server \
            on your network with a certificate of your own CA (its name is still checked against the certificate).
            """
    )
    var backendCaFile: String?

    @Option(help: "Use this llama-server binary and skip the build (env: HEARTH_LLAMA_SERVER).")
    var llamaServer: String?

    @Option(
        help:
            "A JSON file with node settings (keys: models, aliases, models_dir, memory, threads, ctx_size, parallel, llama_server, join, invite, device_cert, name, backend, backend_models: {NAME: CATALOG_ID}, backend_api_key_file, backend_ca_file)."
    )
    var config: String?

    @Option(help: "An invite token from the operator of a private network (env: HEARTH_INVITE); needed on first join only.")
    var invite: String?

    @Option(help: "This node's device certificate from `hearth keys certify-device` (default: device.cert in the data folder, if present).")
    var deviceCert: String?

    @Option(help: "Port of your dashboard on 127.0.0.1 (0 picks a free one); changes need the token in <data-dir>/control.token.")
    var dashboardPort: Int = 0

    @Flag(help: "Run no local dashboard.")
    var noDashboard = false

    @Flag(
        help: """
            Run engines without the sandbox (dedicated user, no_new_privs, memory and CPU limits). Without this flag a \
            node that cannot confine its engines serves nothing and says why; with it, every report says the sandbox is off.
            """
    )
    var noSandbox = false

    @Option(help: "The unprivileged user engines run as when the node runs as root (created once if missing).")
    var sandboxUser: String = "hearth-engine"

    @Option(help: "Dial the gateway again when it has not polled the node for this long (e.g. 30s).")
    var linkTimeout: String = "30s"

    @Option(help: "A name for this node in listings (default: the host name).")
    var name: String?

    func validate() throws {
        for (flag, value) in [("--threads", threads), ("--ctx-size", ctxSize), ("--parallel", parallel)] {
            if let value, value < 1 { throw ValidationError("\(flag) must be at least 1, not \(value)") }
        }
        if let memory { _ = try parseBytes(memory, option: "--memory") }
        if let poolMemory { _ = try parsePoolMemory(poolMemory) }
        if poolOnly, poolMemory == nil { throw ValidationError("--pool-only needs --pool-memory: there is nothing else to lend") }
        if poolOnly, !models.isEmpty { throw ValidationError("--pool-only serves no model alone; drop --model") }
        if let file = models.first(where: { $0.hasSuffix(".gguf") || $0.contains("/") }) {
            throw ValidationError(
                "--model takes a catalog id, not a file (\(file)): pin the file in the catalog (`hearth catalog pin`) and put it in --models-dir as <sha256>.gguf"
            )
        }
        _ = try parseDuration(linkTimeout, option: "--link-timeout")
        if let backend { _ = try parseBackend(backend) }
        _ = try parseDuration(backendCheckInterval, option: "--backend-check-interval")
        for mapping in backendModels { _ = try parseBackendModel(mapping) }
        if backendApiKeyFile != nil, backend == nil, config == nil {
            throw ValidationError("--backend-api-key-file needs --backend: the server the key is for")
        }
        if backendCaFile != nil, backend == nil, config == nil {
            throw ValidationError("--backend-ca-file needs --backend: the server whose certificate it vouches for")
        }
        if backendCaFile != nil, let backend, !backend.hasPrefix("openai:https://") {
            throw ValidationError("--backend-ca-file is for an https --backend; \(backend) has no certificate to check")
        }
        if !backendModels.isEmpty, backend == nil, config == nil {
            throw ValidationError("--backend-model needs --backend: the server whose models it names")
        }
        guard (0...65535).contains(dashboardPort) else { throw ValidationError("--dashboard-port must be between 0 and 65535") }
    }

    private func parseBackend(_ text: String) throws -> String {
        do {
            return try BackendSettings.parse(text)
        } catch {
            throw ValidationError(error.description)
        }
    }

    /// The owner's server's key: from `--backend-api-key-file` (or the config file's), else `HEARTH_BACKEND_API_KEY`,
    /// else none.
    static func backendAPIKey(file path: String?, environment: CommandEnvironment) throws -> String? {
        do {
            if let path {
                guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                    throw ValidationError("cannot read --backend-api-key-file \(path)")
                }
                return try BackendSettings.apiKey(text, from: "--backend-api-key-file \(path)")
            }
            return try environment["HEARTH_BACKEND_API_KEY"].map { try BackendSettings.apiKey($0, from: "HEARTH_BACKEND_API_KEY") }
        } catch let error as BackendSettingsError {
            throw ValidationError(error.description)
        }
    }

    /// The authorities of `--backend-ca-file` (or the config file's), or `nil` without one.
    static func backendTrust(file path: String?) throws -> BackendTrust? {
        guard let path else { return nil }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("cannot read --backend-ca-file \(path)")
        }
        do {
            return try BackendTrust(certificates: BackendTrust.certificates(pem: text, from: "--backend-ca-file \(path)"))
        } catch {
            throw ValidationError(error.description)
        }
    }

    private func parseBackendModel(_ text: String) throws -> BackendSettings.Mapping {
        do {
            let (name, id) = try BackendSettings.mapping(text)
            guard let model = ModelID(id) else { throw ValidationError("--backend-model \(text): '\(id)' is not a valid catalog id") }
            return BackendSettings.Mapping(name: name, id: model)
        } catch let error as BackendSettingsError {
            throw ValidationError(error.description)
        }
    }

    /// The node configuration. When the engine or the default model is not provisioned yet, the node provisions it
    /// as its preparation step, so it stays linked (engines loading) during a long first build.
    /// `--pool-memory`: bytes, or a share of the node's memory (0 < share < 1).
    func parsePoolMemory(_ text: String) throws -> PoolMemory {
        if text.hasSuffix("%") {
            guard let percent = Double(text.dropLast()), percent >= 0, percent < 100 else {
                throw ValidationError("--pool-memory: a share is 0% to 99%, not \(text)")
            }
            return .share(percent / 100)
        }
        // "0" lends nothing, as the help says, with or without a unit.
        if text == "0" { return .bytes(0) }
        return .bytes(try parseBytes(text, option: "--pool-memory"))
    }

    func configuration(
        defaultPoolMemory: String? = nil,
        dataDirectory: String,
        join: String?,
        catalog: Catalog,
        environment: CommandEnvironment,
        installer: EngineInstaller
    ) async throws -> NodeConfiguration {
        let file = try config.map(NodeConfigFile.load) ?? NodeConfigFile()
        var configuration = NodeConfiguration()
        configuration.dataDirectory = dataDirectory
        if let text = join ?? environment["HEARTH_JOIN"] ?? file.join {
            do {
                configuration.join = try JoinAddress(parsing: text)
            } catch {
                throw ValidationError("--join: \(error.description)")
            }
        }
        configuration.name = name ?? file.name ?? ProcessInfo.processInfo.hostName
        configuration.linkTimeout = try parseDuration(linkTimeout, option: "--link-timeout")
        configuration.invite = invite ?? environment["HEARTH_INVITE"] ?? file.invite
        configuration.dashboardPort = noDashboard ? nil : dashboardPort
        let defaultCertificate = (dataDirectory as NSString).appendingPathComponent("device.cert")
        if let path = deviceCert ?? file.deviceCert ?? (FileManager.default.fileExists(atPath: defaultCertificate) ? defaultCertificate : nil) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read the device certificate \(path)")
            }
            do {
                configuration.deviceCertificate = try DeviceCertificate(token: text.trimmingCharacters(in: .whitespacesAndNewlines))
            } catch {
                throw ValidationError("the device certificate \(path) is not usable: \(error.description)")
            }
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        configuration.limits = NodeLimits(
            threads: threads ?? file.threads ?? cores,
            contextSize: ctxSize ?? file.ctxSize ?? 2048,
            parallelSlots: parallel ?? file.parallel ?? 2,
            memoryBytes: try (memory ?? file.memory).map { try parseBytes($0, option: "--memory") }
        )
        configuration.catalog = catalog
        configuration.extraEngineArguments = engineArguments
        configuration.embeddings = embeddings
        configuration.sandbox.enabled = !noSandbox
        configuration.sandbox.user = sandboxUser

        if let path = llamaServer ?? environment["HEARTH_LLAMA_SERVER"] ?? file.llamaServer {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw ValidationError("llama-server at \(path) does not exist or is not executable")
            }
            configuration.llamaServerPath = path
        } else {
            configuration.llamaServerPath = installer.llamaServerPath
        }
        if let text = backend ?? file.backend {
            let mappings =
                backendModels.isEmpty ? (file.backendModels ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" } : backendModels
            guard !mappings.isEmpty else {
                throw ValidationError("--backend serves nothing without --backend-model NAME=CATALOG_ID (or backend_models in --config)")
            }
            configuration.backend = BackendSettings(baseURL: try parseBackend(text), models: try mappings.map(parseBackendModel))
            configuration.backend?.checkInterval = try parseDuration(backendCheckInterval, option: "--backend-check-interval")
            configuration.backend?.apiKey = try Self.backendAPIKey(file: backendApiKeyFile ?? file.backendApiKeyFile, environment: environment)
            configuration.backend?.trust = try Self.backendTrust(file: backendCaFile ?? file.backendCaFile)
            if configuration.backend?.trust != nil, !text.hasPrefix("openai:https://") {
                throw ValidationError("backend_ca_file is for an https backend; \(text) has no certificate to check")
            }
        } else if backendApiKeyFile != nil {
            throw ValidationError("--backend-api-key-file needs --backend: the server the key is for")
        } else if backendCaFile != nil {
            throw ValidationError("--backend-ca-file needs --backend: the server whose certificate it vouches for")
        }
        let usesBackendOnly = configuration.backend != nil && models.isEmpty && file.models == nil
        let missingEngine = !FileManager.default.isExecutableFile(atPath: configuration.llamaServerPath)
        if let text = poolMemory ?? defaultPoolMemory {
            let rpcServer =
                rpcServer ?? environment["HEARTH_RPC_SERVER"]
                ?? ((configuration.llamaServerPath as NSString).deletingLastPathComponent as NSString).appendingPathComponent("ggml-rpc-server")
            let threads = max(1, configuration.limits.threads)
            switch try parsePoolMemory(text) {
            case .bytes(0), .share(0): break
            case .bytes(let bytes): configuration.pool = PoolSettings(memoryBytes: bytes, threads: threads, rpcServerPath: rpcServer)
            case .share(let share): configuration.pool = PoolSettings(memoryShare: share, threads: threads, rpcServerPath: rpcServer)
            }
        }

        let aliases = try (aliases.isEmpty ? (file.aliases ?? []) : aliases).map { name in
            guard let id = ModelID(name) else { throw ValidationError("alias '\(name)' is not a valid model name") }
            return id
        }
        let directory = modelsDir ?? file.modelsDir ?? installer.modelsDirectory
        let names = models.isEmpty ? (file.models ?? [DefaultModel.id.rawValue]) : models
        configuration.models = try names.enumerated().map { index, name in
            guard let id = ModelID(name), let entry = catalog.resolve(id) ?? catalog.resolve(id, includeUnpinned: true) else {
                throw ValidationError("'\(name)' is not in the catalog; `hearth catalog list` shows what is")
            }
            guard let spec = ModelSpec(entry: entry, directory: directory, limits: configuration.limits, aliases: index == 0 ? aliases : []) else {
                throw ValidationError(
                    "\(entry.id) is not pinned in the catalog, so no node may load it; an operator pins it with `hearth catalog pin`"
                )
            }
            return spec
        }
        configuration.modelsDirectory = directory
        if poolOnly || usesBackendOnly { configuration.models = [] }
        // The default model comes from its wheel, through the installer, not from a URL.
        let defaultSpec = configuration.models.first { $0.sha256 == DefaultModel.sha256 }
        let needsModel = defaultSpec.map { !FileManager.default.fileExists(atPath: $0.path) } ?? false
        // A node that only passes requests to the owner's server builds no engine.
        let needsEngine = missingEngine && (!configuration.models.isEmpty || configuration.pool != nil)
        if needsEngine || needsModel {
            configuration.prepare = {
                if needsEngine { try await installer.installEngine() }
                if needsModel, let defaultSpec {
                    let installed = try await installer.installDefaultModel()
                    if installed != defaultSpec.path { try FileManager.default.copyItem(atPath: installed, toPath: defaultSpec.path) }
                }
            }
        }
        return configuration
    }
}

/// The node's optional JSON config file.
struct NodeConfigFile: Decodable {
    var models: [String]?
    var aliases: [String]?
    var modelsDir: String?
    var memory: String?
    var threads: Int?
    var ctxSize: Int?
    var parallel: Int?
    var llamaServer: String?
    var join: String?
    var invite: String?
    var deviceCert: String?
    var name: String?
    var backend: String?
    var backendModels: [String: String]?
    var backendApiKeyFile: String?
    var backendCaFile: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case models, aliases, memory, threads, parallel, join, invite, name, backend
        case backendModels = "backend_models"
        case backendApiKeyFile = "backend_api_key_file"
        case backendCaFile = "backend_ca_file"
        case deviceCert = "device_cert"
        case modelsDir = "models_dir"
        case ctxSize = "ctx_size"
        case llamaServer = "llama_server"
    }

    init() {}

    /// Reads and checks the file; unknown keys are refused so that typos do not pass silently.
    static func load(_ path: String) throws -> NodeConfigFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read config file \(path)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ValidationError("config file \(path) is not a JSON object")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw ValidationError("config file \(path): unknown key '\(unknown)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        do {
            return try JSONDecoder().decode(NodeConfigFile.self, from: data)
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw ValidationError("config file \(path): '\(key)' has the wrong type")
        } catch {
            throw ValidationError("config file \(path) is not valid: \(error)")
        }
    }
}
