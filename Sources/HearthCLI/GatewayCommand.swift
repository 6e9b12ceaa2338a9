import ArgumentParser
import HearthCore
import HearthGateway
import Logging
import ServiceLifecycle
import UnixSignals

/// Gateway settings shared by `hearth gateway` and `hearth up`.
struct GatewayOptions: ParsableArguments {
    @Option(help: "Address the API listens on. Use 0.0.0.0 only behind a firewall or proxy you control.")
    var host: String = "127.0.0.1"

    @Option(help: "API port; 0 picks a free one.")
    var port: Int = 8080

    @Option(help: "Requests per minute allowed per client address on /v1 and /api.")
    var rateLimit: Int = 120

    @Option(name: .customLong("trusted-proxy"), help: "A reverse proxy whose X-Forwarded-For is believed (repeatable).")
    var trustedProxies: [String] = []

    @Option(help: "Ceiling on max_tokens, also applied when a request sends none.")
    var maxTokens: Int = 4096

    @Option(help: "Largest request body accepted, in bytes.")
    var maxBodyBytes: Int = 1 << 20

    @Option(help: "Drop a node from routing after this long without a heartbeat (e.g. 15s).")
    var nodeTTL: String = "15s"

    @Flag(help: "Refuse anonymous callers on /v1 and /api: every request needs a login token or an API key.")
    var requireAuth = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535, not \(port)") }
        guard rateLimit > 0 else { throw ValidationError("--rate-limit must be positive") }
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        _ = try parseDuration(nodeTTL, option: "--node-ttl")
    }

    func configuration(dataDirectory: String) throws -> GatewayConfiguration {
        let ttl = try parseDuration(nodeTTL, option: "--node-ttl")
        return GatewayConfiguration().with {
            $0.host = host
            $0.port = port
            $0.dataDirectory = dataDirectory
            $0.rateLimitPerMinute = rateLimit
            $0.trustedProxies = Set(trustedProxies)
            $0.limits = RequestLimits(maxTokensCeiling: maxTokens)
            $0.maxBodyBytes = maxBodyBytes
            $0.nodeTTL = ttl
            $0.requireAuth = requireAuth
        }
    }
}

/// `hearth gateway`: the API that apps call; it routes each request to a ready node.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run a gateway: the OpenAI/Ollama API that routes requests to nodes.",
        discussion: """
            Prints `READY url=<base url>` on standard output once it listens; logs go to standard error.
            Nodes join with: hearth node --gateway <base url>
            """
    )

    @OptionGroup var gateway: GatewayOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Folder for the gateway's database (env: HEARTH_DATA_DIR; default: the per-user data folder + /gateway).")
    var dataDir: String?

    func run() async throws {
        let logger = try bootstrapLogging(logging)
        let environment = CommandEnvironment()
        let configuration = try gateway.configuration(dataDirectory: dataDir ?? environment.defaultDataDirectory + "/gateway")
        let host = configuration.host
        let built = try await buildGateway(configuration: configuration, logger: logger) { port in
            say("READY url=http://\(host):\(port)")
        }
        try await runServices(built.services, logger: logger)
    }
}

/// Runs services as the process's one `ServiceGroup`, stopping gracefully on SIGTERM and SIGINT.
func runServices(_ services: [any Service], logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    configuration.maximumGracefulShutdownDuration = .seconds(10)
    try await ServiceGroup(configuration: configuration).run()
}
