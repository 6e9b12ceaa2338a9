import ArgumentParser
import Foundation
import HearthCore
import HearthNode
import NIOFoundationEssentialsCompat

/// Node settings shared by `hearth node` and `hearth up`. Flags win over environment variables, which win over
/// the config file, which wins over the defaults.
struct NodeOptions: ParsableArguments {
    @Option(help: "A GGUF file to serve instead of the default model (needs --sha256).")
    var model: String?

    @Option(help: "The exact name clients use for --model (default: the file name without .gguf).")
    var modelID: String?

    @Option(help: "The SHA-256 the --model file must have; the node refuses to load anything else.")
    var sha256: String?

    @Option(name: .customLong("alias"), help: "Another exact name for the model (repeatable).")
    var aliases: [String] = []

    @Option(help: "CPU threads for the engine (default: all cores).")
    var threads: Int?

    @Option(help: "Context size in tokens for each request slot.")
    var ctxSize: Int?

    @Option(help: "Requests the engine serves at once.")
    var parallel: Int?

    @Option(help: "Use this llama-server binary and skip the build (env: HEARTH_LLAMA_SERVER).")
    var llamaServer: String?

    @Option(
        help:
            "A JSON file with node settings (keys: model, model_id, sha256, aliases, threads, ctx_size, parallel, llama_server, join, invite, device_cert, name)."
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

    @Option(help: "Dial the gateway again when it has not polled the node for this long (e.g. 30s).")
    var linkTimeout: String = "30s"

    @Option(help: "A name for this node in listings (default: the host name).")
    var name: String?

    func validate() throws {
        for (flag, value) in [("--threads", threads), ("--ctx-size", ctxSize), ("--parallel", parallel)] {
            if let value, value < 1 { throw ValidationError("\(flag) must be at least 1, not \(value)") }
        }
        if model != nil && sha256 == nil && config == nil {
            throw ValidationError("--model needs --sha256: Hearth only loads files whose hash you pinned")
        }
        _ = try parseDuration(linkTimeout, option: "--link-timeout")
        guard (0...65535).contains(dashboardPort) else { throw ValidationError("--dashboard-port must be between 0 and 65535") }
    }

    /// The node configuration. When the engine or the default model is not provisioned yet, the node provisions it
    /// as its preparation step, so it stays linked (engines loading) during a long first build.
    func configuration(
        dataDirectory: String,
        join: String?,
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
            parallelSlots: parallel ?? file.parallel ?? 2
        )

        if let path = llamaServer ?? environment["HEARTH_LLAMA_SERVER"] ?? file.llamaServer {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw ValidationError("llama-server at \(path) does not exist or is not executable")
            }
            configuration.llamaServerPath = path
        } else {
            configuration.llamaServerPath = installer.llamaServerPath
        }
        let needsEngine = !FileManager.default.isExecutableFile(atPath: configuration.llamaServerPath)

        let aliases = try (aliases.isEmpty ? (file.aliases ?? []) : aliases).map { name in
            guard let id = ModelID(name) else { throw ValidationError("alias '\(name)' is not a valid model name") }
            return id
        }
        let customModel = model ?? file.model
        if let path = customModel {
            guard FileManager.default.fileExists(atPath: path) else {
                throw ValidationError("model file \(path) does not exist")
            }
            guard let hex = sha256 ?? file.sha256, let digest = SHA256Digest(hex: hex) else {
                throw ValidationError("the model needs a valid --sha256 (64 hex characters)")
            }
            let derived = ((path as NSString).lastPathComponent as NSString).deletingPathExtension.lowercased()
            guard let id = ModelID(modelID ?? file.modelID ?? derived) else {
                throw ValidationError("'\(modelID ?? derived)' is not a valid model name; pass --model-id")
            }
            configuration.models = [ModelSpec(id: id, aliases: aliases, path: path, sha256: digest)]
        } else {
            var spec = installer.defaultModelSpec
            spec.aliases = aliases
            configuration.models = [spec]
        }
        let needsModel = customModel == nil && !FileManager.default.fileExists(atPath: installer.defaultModelPath)
        if needsEngine || needsModel {
            configuration.prepare = {
                if needsEngine { try await installer.installEngine() }
                if needsModel { try await installer.installDefaultModel() }
            }
        }
        return configuration
    }
}

/// The node's optional JSON config file.
struct NodeConfigFile: Decodable {
    var model: String?
    var modelID: String?
    var sha256: String?
    var aliases: [String]?
    var threads: Int?
    var ctxSize: Int?
    var parallel: Int?
    var llamaServer: String?
    var join: String?
    var invite: String?
    var deviceCert: String?
    var name: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case model, sha256, aliases, threads, parallel, join, invite, name
        case deviceCert = "device_cert"
        case modelID = "model_id"
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
