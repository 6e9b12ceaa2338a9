import ArgumentParser
import Foundation
import HearthCore
import HearthNode
import Logging

/// `hearth node`: serve models to a gateway with a supervised llama-server.
struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a node: serve models to a gateway with a supervised llama-server.",
        discussion: """
            The node dials out to its gateway over TLS 1.3, pins the gateway's key from the join string, and serves the \
            gateway's requests over that one link: it opens no port. Without --model it serves the default model \
            (SmolLM2-135M-Instruct), building the engine and fetching the model into the cache first if needed. \
            Prints `READY node=<node id>` on standard output once it starts, and `DASHBOARD url=…` for your local \
            dashboard (127.0.0.1 only; pausing needs the token the node writes to control.token).
            """
    )

    @Option(
        help: """
            The gateway to join: host:port#gateway-id, as `hearth gateway join-string` prints it; for a network of \
            several gateways, every address and the network id (a:7070,b:7070#net:<network-id>), tried in order \
            (env: HEARTH_JOIN).
            """
    )
    var join: String?

    @Option(help: "Folder for the node's identity and engine logs (env: HEARTH_DATA_DIR; default: the per-user data folder + /node).")
    var dataDir: String?

    @Flag(help: "Create the sandbox user and folders engines run in (needs root), check the limits work, and exit.")
    var setupSandbox = false

    @OptionGroup var node: NodeOptions
    @OptionGroup var shutdown: ShutdownOptions
    @OptionGroup var catalog: CatalogOptions
    @OptionGroup var logging: LoggingOptions
    @OptionGroup var loops: EventLoopOptions

    func run() async throws {
        let logger = try bootstrapLogging(logging)
        if setupSandbox {
            var settings = SandboxSettings()
            settings.user = node.sandboxUser
            let limits = NodeLimits(threads: ProcessInfo.processInfo.activeProcessorCount, contextSize: 1, parallelSlots: 1)
            let sandbox = await EngineSandbox.prepare(
                settings: settings,
                limits: limits,
                dataDirectory: NSTemporaryDirectory(),
                name: "setup",
                logger: logger
            )
            say(sandbox.report.summary)
            if !sandbox.report.blockers.isEmpty { throw ExitCode.failure }
            return
        }
        let environment = CommandEnvironment()
        let installer = EngineInstaller(progress: warn)
        let dataDirectory = dataDir ?? environment.defaultDataDirectory + "/node"
        var configuration = try await node.configuration(
            dataDirectory: dataDirectory,
            join: join,
            catalog: try catalog.load(dataDirectory: dataDirectory),
            environment: environment,
            installer: installer
        )
        configuration.drainTimeout = shutdown.duration
        guard let target = configuration.join else {
            throw ValidationError("give the gateway to join: --join host:port#gateway-id (or HEARTH_JOIN, or \"join\" in --config)")
        }
        let built = try await buildNode(configuration: configuration, logger: logger) { port in
            say("DASHBOARD url=http://127.0.0.1:\(port)")
        }
        logger.info("node starting", metadata: ["node.id": "\(built.identity.id)", "node.gateway": "\(target)"])
        say("SANDBOX \(built.sandbox.summary)")
        say("READY node=\(built.identity.id)")
        try await runServices(built.services, drain: shutdown.duration, logger: logger)
    }
}
