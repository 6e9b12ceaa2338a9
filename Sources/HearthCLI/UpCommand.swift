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
    @OptionGroup var shutdown: ShutdownOptions
    @OptionGroup var catalog: CatalogOptions
    @OptionGroup var logging: LoggingOptions
    @OptionGroup var loops: EventLoopOptions

    @Option(help: "Folder for all state: gateway/ and node/ inside it (env: HEARTH_DATA_DIR; default: the per-user data folder).")
    var dataDir: String?

    func run() async throws {
        let logger = try bootstrapLogging(logging)
        let environment = CommandEnvironment()
        let dataDirectory = dataDir ?? environment.defaultDataDirectory
        var gatewayConfiguration = try gateway.configuration(dataDirectory: dataDirectory + "/gateway", localMesh: true)
        // One catalog for both: the gateway's (--catalog, or gateway/catalog.json).
        let models = try catalog.load(dataDirectory: dataDirectory + "/gateway")
        gatewayConfiguration.catalog = models
        let ready = ReadySignal()
        let mesh = ReadySignal()
        let builtGateway = try await buildGateway(
            configuration: gatewayConfiguration,
            logger: logger,
            onServerRunning: { port in await ready.listening(on: port) },
            onMeshListening: { port in await mesh.listening(on: port) }
        )
        // The local node dials the gateway's mesh over loopback, pinning the gateway's key like any node. The mesh
        // port is known only once it listens (port 0), so the node reads its join address through `mesh`.
        let installer = EngineInstaller(progress: warn)
        let nodeConfiguration = try await node.configuration(
            // The local node lends a quarter of its memory to pools unless told otherwise.
            defaultPoolMemory: "25%",
            dataDirectory: dataDirectory + "/node",
            join: nil,
            catalog: models,
            environment: environment,
            installer: installer
        )
        let host = gatewayConfiguration.host == "0.0.0.0" ? "127.0.0.1" : gatewayConfiguration.host
        let model = nodeConfiguration.models[0].id
        let gatewayID = builtGateway.id
        let builtNode = try await buildNode(
            configuration: nodeConfiguration.with {
                $0.joinProvider = { JoinAddress(host: "127.0.0.1", port: await mesh.port(), gatewayID: gatewayID) }
                $0.drainTimeout = shutdown.duration
                // One process, one idle code release: the gateway's, which sees every request (each of the node's
                // comes through it); the node's would give the pages back while the gateway still serves.
                $0.releasesIdleCode = false
            },
            logger: logger,
            onDashboardRunning: { port in warn("Node dashboard: http://127.0.0.1:\(port)") }
        )
        warn(builtNode.sandbox.summary.prefix(1).uppercased() + builtNode.sandbox.summary.dropFirst())
        let registry = builtGateway.registry
        let engines = builtNode.engines
        Task {
            let port = await ready.port()
            let url = "http://\(host):\(port)"
            say("READY url=\(url)")
            warn("Loading \(model)…")
            // Announce the curl only once the gateway routes to the model, so it works when pasted. The registry and
            // the node's engines each ring their signal on every change: wait on those, not on a timer.
            let signals = [registry.changes] + (engines.first.map { [$0.changes] } ?? [])
            var toldFailure = false
            while !Task.isCancelled {
                let seen = signals.map(\.generation)
                if !registry.readyModels().isEmpty { break }
                let failed = engines.first { $0.snapshot.state == .failed }
                if let failed, !toldFailure {
                    warn("The engine failed: \(failed.snapshot.detail ?? "see the log above"). Retrying with backoff; Ctrl-C to stop.")
                }
                toldFailure = failed != nil
                await withTaskGroup(of: Void.self) { group in
                    for (signal, generation) in zip(signals, seen) {
                        group.addTask { await signal.wait(until: .now + .seconds(3600)) { signal.generation != generation } }
                    }
                    await group.next()
                    group.cancelAll()
                }
            }
            say(
                """

                Hearth is up: \(model) is ready. Point OpenAI or Ollama clients at \(url)
                Chat in your browser: \(url)/   (the network: \(url)/network, your account: \(url)/account)
                Try:

                  curl \(url)/v1/chat/completions -H 'content-type: application/json' \\
                    -d '{"model":"\(model)","messages":[{"role":"user","content":"Hello!"}],"stream":true}'

                or: hearth chat --url \(url)
                Ctrl-C stops everything.
                """
            )
        }
        // Start order: gateway loops and mesh, engines, node link, gateway API. Shutdown runs in reverse: the API
        // finishes its streams, the node drains and closes its link, then engines, the mesh and loops stop.
        let gatewayLoops = builtGateway.services.dropLast()
        let services: [any Service] = gatewayLoops + builtNode.services + builtGateway.services.suffix(1)
        try await runServices(services, drain: shutdown.duration, logger: logger)
    }
}

/// Hands a bound port to the parts that need it once it is known.
actor ReadySignal {
    private var bound: Int?
    private var waiters: [CheckedContinuation<Int, Never>] = []

    func listening(on port: Int) {
        bound = port
        for waiter in waiters { waiter.resume(returning: port) }
        waiters = []
    }

    func port() async -> Int {
        if let bound { return bound }
        return await withCheckedContinuation { waiters.append($0) }
    }
}
