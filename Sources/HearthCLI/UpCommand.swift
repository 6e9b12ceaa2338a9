import ArgumentParser
import HearthCore
import HearthGateway
import HearthNode
import Logging
import ServiceLifecycle

/// `hearth up`: a gateway and a local node in one process, serving the default model.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run a gateway and a local node together, serving the default model. The quickest start.",
        discussion: """
            Builds the engine and fetches the default model into the cache on first use (a few minutes, with progress),
            then prints the API URL and a curl command to try. Ctrl-C stops everything, engines included.
            """
    )

    @OptionGroup var gateway: GatewayOptions
    @OptionGroup var node: NodeOptions
    @OptionGroup var logging: LoggingOptions

    @Option(help: "Folder for all state: gateway/ and node/ inside it (env: HEARTH_DATA_DIR; default: the per-user data folder).")
    var dataDir: String?

    func run() async throws {
        let logger = try bootstrapLogging(logging)
        let environment = CommandEnvironment()
        let dataDirectory = dataDir ?? environment.defaultDataDirectory
        let gatewayConfiguration = try gateway.configuration(dataDirectory: dataDirectory + "/gateway")
        let ready = ReadySignal()
        let builtGateway = try await buildGateway(configuration: gatewayConfiguration, logger: logger) { port in
            await ready.gatewayListening(on: port)
        }
        // The node must know the gateway's port, which is only known once it listens (port 0); the node's
        // heartbeat reads the URL through `ready`, so the node is built now and announces once the port is known.
        let installer = EngineInstaller(progress: warn)
        var nodeConfiguration = try await node.configuration(
            dataDirectory: dataDirectory + "/node",
            gatewayURL: nil,
            environment: environment,
            installer: installer
        )
        nodeConfiguration.gatewayURL = ready.placeholderURL
        let host = gatewayConfiguration.host == "0.0.0.0" ? "127.0.0.1" : gatewayConfiguration.host
        let model = nodeConfiguration.models[0].id
        let builtNode = try await buildNode(
            configuration: nodeConfiguration.with { $0.gatewayURLProvider = { await ready.url(host: host) } },
            logger: logger
        )
        let registry = builtGateway.registry
        let engines = builtNode.engines
        Task {
            let port = await ready.port()
            let url = "http://\(host):\(port)"
            say("READY url=\(url)")
            warn("Loading \(model)…")
            // Announce the curl only once the gateway routes to the model, so it works when pasted.
            while registry.readyModels().isEmpty {
                if let failed = engines.first(where: { $0.snapshot.state == .failed }) {
                    warn("The engine failed: \(failed.snapshot.detail ?? "see the log above"). Retrying with backoff; Ctrl-C to stop.")
                    while engines.contains(where: { $0.snapshot.state == .failed }) { try? await Task.sleep(for: .milliseconds(500)) }
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            say(
                """

                Hearth is up: \(model) is ready. Point OpenAI or Ollama clients at \(url)
                Try:

                  curl \(url)/v1/chat/completions -H 'content-type: application/json' \\
                    -d '{"model":"\(model)","messages":[{"role":"user","content":"Hello!"}],"stream":true}'

                or: hearth chat --url \(url)
                Ctrl-C stops everything.
                """
            )
        }
        // Start order: gateway loops, engines, node API, gateway API, heartbeat. Shutdown runs in reverse: the node
        // says it is draining, the gateway finishes its streams, then the node's API, engines and loops stop.
        let gatewayLoops = builtGateway.services.dropLast()
        let services: [any Service] = gatewayLoops + builtNode.services + [builtGateway.application, builtNode.heartbeat]
        try await runServices(services, logger: logger)
    }
}

/// Hands the gateway's bound port to the parts that need it once it is known.
actor ReadySignal {
    private var bound: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []

    nonisolated let placeholderURL = "http://127.0.0.1:0"

    func gatewayListening(on port: Int) {
        bound = port
        for waiter in waiters { waiter.resume(returning: port) }
        waiters = []
    }

    func port() async -> Int {
        if let bound { return bound }
        return await withCheckedContinuation { waiters.append($0) }
    }

    func url(host: String) async -> String {
        "http://\(host):\(await port())"
    }
}
