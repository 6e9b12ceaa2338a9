import ArgumentParser
import HearthNode
import Logging

/// `hearth node`: serve models to a gateway with a supervised llama-server.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a node: serve models to a gateway with a supervised llama-server.",
        discussion: """
            Without --model the node serves the default model (SmolLM2-135M-Instruct), building the engine and fetching
            the model into the cache first if needed. Prints `READY port=<n>` on standard output once its API listens.
            """
    )

    @Option(help: "The gateway to join, e.g. http://127.0.0.1:8080 (env: HEARTH_GATEWAY).")
    var gateway: String?

    @Option(help: "Address of the node's API, which the gateway calls.")
    var host: String = "127.0.0.1"

    @Option(help: "Port of the node's API; 0 picks a free one.")
    var port: Int = 0

    @Option(help: "The URL the gateway uses to reach this node (default: http://<host>:<port>).")
    var advertiseURL: String?

    @Option(help: "Folder for the node's identity and engine logs (env: HEARTH_DATA_DIR; default: the per-user data folder + /node).")
    var dataDir: String?

    @OptionGroup var node: NodeOptions
    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535, not \(port)") }
        if ["0.0.0.0", "::"].contains(host) && advertiseURL == nil {
            throw ValidationError("--host \(host) listens on every address; give --advertise-url with the address the gateway should call")
        }
    }

    func run() async throws {
        let logger = try bootstrapLogging(logging)
        let environment = CommandEnvironment()
        let installer = EngineInstaller(progress: warn)
        var configuration = try await node.configuration(
            dataDirectory: dataDir ?? environment.defaultDataDirectory + "/node",
            gatewayURL: gateway,
            environment: environment,
            installer: installer
        )
        configuration.host = host
        configuration.port = port
        configuration.advertisedURL = advertiseURL
        let built = try await buildNode(configuration: configuration, logger: logger) { port in
            say("READY port=\(port)")
        }
        logger.info("node starting", metadata: ["node.id": "\(built.identity.id)", "node.gateway": "\(configuration.gatewayURL)"])
        try await runServices(built.services + [built.heartbeat], logger: logger)
    }
}
