import ArgumentParser
import Foundation
import HearthCore
import HearthGateway
import HearthMesh
import HearthStore
import Logging
import ServiceLifecycle
import Synchronization
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

    @Option(help: "Address of the mesh port, where nodes dial in; nodes must reach it, apps never use it (default: 0.0.0.0; `hearth up`: 127.0.0.1).")
    var meshHost: String?

    @Option(help: "Mesh port; 0 picks a free one (default: 7070; `hearth up`: 0).")
    var meshPort: Int?

    @Option(
        help:
            "The host name or address nodes use to reach the mesh, for the join string (default: --mesh-host, or this machine's name when that is a wildcard)."
    )
    var advertiseHost: String?

    @Option(
        help: """
            Stop routing to a node whose last report is older than this; a closed link removes it at once. An idle \
            node is polled every third of it, 20 s at most. (default: 15s; `hearth up`: 60s, its node is on this machine)
            """
    )
    var nodeTTL: String?

    @Option(help: "public: any node may join (new ones rate limited per address); private: a node needs an invite (`hearth invite create`).")
    var network: String = "public"

    @Option(help: "Token quota per hour for anonymous callers and accounts without standing (the floor).")
    var anonymousTokensPerHour: Int = 20_000

    @Option(help: "The most tokens per hour any account's standing can raise its quota to (the ceiling).")
    var maxTokensPerHour: Int = 1_000_000

    @Flag(help: "Admit only nodes certified by an account key (`hearth keys certify-device`).")
    var requireDeviceCertificate = false

    @Flag(help: "Refuse anonymous callers on /v1 and /api: every request needs a login token or an API key.")
    var requireAuth = false

    @Option(
        name: .customLong("allowed-host"),
        help: """
            A host name the API answers besides loopback names (repeatable; * answers any). Bound to loopback, the \
            gateway answers only localhost, 127.x.x.x, [::1] and these, which stops DNS rebinding; bound elsewhere \
            it answers any name unless some are listed.
            """
    )
    var allowedHosts: [String] = []

    @Option(
        name: .customLong("allowed-origin"),
        help: """
            A web origin whose pages may call the API from a browser (repeatable; exact like https://chat.example.org, \
            * for any, or with * wildcards like http://localhost:*), as Ollama's OLLAMA_ORIGINS. The gateway's own \
            pages are always allowed; requests without an Origin header (curl, SDKs) are never affected.
            """
    )
    var allowedOrigins: [String] = []

    @Option(help: "Close a connection that has not sent a whole request head this long after connecting (e.g. 10s).")
    var headerTimeout: String = "10s"

    @Option(help: "Close a keep-alive connection idle this long between requests, or a request body stalled this long (e.g. 60s).")
    var idleTimeout: String = "60s"

    @Option(help: "API connections one client address may hold open at once (trusted proxies are exempt).")
    var maxConnectionsPerAddress: Int = 256

    @Option(
        help: """
            Create a pool (a model split over several nodes) when a request asks for a pinned model that no node \
            serves alone but the nodes lending memory could together: on or off (default: off; on for `hearth up`).
            """
    )
    var autoPools: String?

    @Option(
        name: .customLong("operator"),
        help: "An account id (64 hex digits) that may create and stop pools, besides the gateway's own key (repeatable)."
    )
    var operators: [String] = []

    @Option(help: "Context size in tokens of a pool's engine.")
    var poolContext: Int = 4096

    @Option(help: "Replan a pool whose head made no token progress on a busy slot for this long (e.g. 30s).")
    var poolStallTimeout: String = "30s"

    @Option(help: "Stop an automatic pool that served nothing for this long, so its members get their memory back (e.g. 15m).")
    var poolIdleTimeout: String = "15m"

    @Option(help: "At most this many automatic pools at once; a request that would need one more gets 503 pool_limit.")
    var maxAutoPools: Int = 2

    @Option(
        help: """
            Continue a stream whose node broke (died, lost its link, was stopped) on another node serving the same \
            file, at most this many times per stream; 0 ends such a stream with an error event instead.
            """
    )
    var maxContinuations: Int = 2

    @Option(
        help: """
            The share of answers checked on a second node serving the same file (0 ... 1), besides each new node's \
            first three: the claimed tokens are scored under that node's model; a node whose answers the model finds \
            unlikely loses reputation and traffic.
            """
    )
    var spotCheckShare: Double = 0.03

    @Option(
        help: """
            A PostgreSQL database to keep accounts, keys, logins, quotas, usage, the ledger and pools in, shared by every \
            gateway given the same one: postgres://user:password@host:port/database[?sslmode=require&connect_timeout=10] (env: \
            HEARTH_DATABASE_URL; default: SQLite in the data folder). The gateway's key stays in its data folder.
            """
    )
    var database: String?

    @Option(
        help: """
            The key of the network this gateway is one of (a file made once by `hearth gateway network-key`, copied to \
            every gateway of the network): the gateway shows the network's signature over its own key, prints a join \
            string ending in #net:<network id> that admits any of the network's gateways, and accepts invites signed by \
            the network key.
            """
    )
    var networkKey: String?

    /// The network key file, loaded.
    func loadNetworkKey() throws -> IdentityKey? {
        guard let networkKey else { return nil }
        do {
            return try KeyFile.load(networkKey)
        } catch {
            throw ValidationError("--network-key: \(error)")
        }
    }

    /// `--database`, else `HEARTH_DATABASE_URL`, parsed; nil for the embedded SQLite database.
    func databaseURL(environment: CommandEnvironment = CommandEnvironment()) throws -> DatabaseURL? {
        try Self.parseDatabaseURL(database ?? environment["HEARTH_DATABASE_URL"])
    }

    static func parseDatabaseURL(_ text: String?) throws -> DatabaseURL? {
        guard let text else { return nil }
        do {
            return try DatabaseURL(text)
        } catch {
            throw ValidationError("--database: \(error)")
        }
    }

    @Flag(
        help: """
            When no node can serve the model asked for, serve a smaller one of its family instead, for every request \
            (one request can ask with the header X-Hearth-Allow-Degrade: 1). Answers name the model that served them \
            and carry X-Hearth-Degraded-From.
            """
    )
    var allowDegrade = false

    @Flag(
        help: """
            Route to models that nodes serve through their owners' own servers (hearth node --backend) even when the \
            node could not check that the server's file is the pinned one. Off: such models are listed in /api/nodes \
            as unverified and never routed to.
            """
    )
    var allowUnverifiedBackends = false

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535, not \(port)") }
        if let meshPort, !(0...65535).contains(meshPort) {
            throw ValidationError("--mesh-port must be between 0 and 65535, not \(meshPort)")
        }
        guard rateLimit > 0 else { throw ValidationError("--rate-limit must be positive") }
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        guard maxBodyBytes >= 1024 else { throw ValidationError("--max-body-bytes must be at least 1024") }
        if let nodeTTL { _ = try parseDuration(nodeTTL, option: "--node-ttl") }
        _ = try parseDuration(headerTimeout, option: "--header-timeout")
        _ = try parseDuration(idleTimeout, option: "--idle-timeout")
        if let autoPools, !["on", "off"].contains(autoPools) { throw ValidationError("--auto-pools must be on or off, not '\(autoPools)'") }
        for account in operators where NodeID(account) == nil { throw ValidationError("--operator: '\(account)' is not an account id") }
        guard poolContext >= 256 else { throw ValidationError("--pool-context must be at least 256") }
        _ = try parseDuration(poolIdleTimeout, option: "--pool-idle-timeout")
        guard maxAutoPools >= 0 else { throw ValidationError("--max-auto-pools must be 0 or more") }
        guard (0...16).contains(maxContinuations) else { throw ValidationError("--max-continuations must be between 0 and 16") }
        guard (0...1).contains(spotCheckShare) else { throw ValidationError("--spot-check-share must be between 0 and 1") }
        _ = try parseDuration(poolStallTimeout, option: "--pool-stall-timeout")
        guard maxConnectionsPerAddress > 0 else { throw ValidationError("--max-connections-per-address must be positive") }
        guard anonymousTokensPerHour > 0, maxTokensPerHour >= anonymousTokensPerHour else {
            throw ValidationError("--anonymous-tokens-per-hour must be positive and at most --max-tokens-per-hour")
        }
        guard NetworkMode(rawValue: network) != nil else { throw ValidationError("--network must be public or private, not '\(network)'") }
    }

    /// The mesh address, with the defaults of `hearth gateway` (open to nodes on 7070) or of `hearth up`
    /// (loopback, any free port: its node is local).
    func meshAddress(local: Bool) -> (host: String, port: Int) {
        (meshHost ?? (local ? "127.0.0.1" : "0.0.0.0"), meshPort ?? (local ? 0 : 7070))
    }

    func configuration(dataDirectory: String, localMesh: Bool = false) throws -> GatewayConfiguration {
        let mesh = meshAddress(local: localMesh)
        // `hearth up`'s node shares the machine: a closed link already says it is gone, and an idle laptop should not
        // wake every 5 s to ask it how it is.
        let ttl = try parseDuration(nodeTTL ?? (localMesh ? "60s" : "15s"), option: "--node-ttl")
        let headerTimeout = try parseDuration(headerTimeout, option: "--header-timeout")
        let idleTimeout = try parseDuration(idleTimeout, option: "--idle-timeout")
        let poolIdle = try parseDuration(poolIdleTimeout, option: "--pool-idle-timeout")
        let poolStall = try parseDuration(poolStallTimeout, option: "--pool-stall-timeout")
        let database = try databaseURL()
        let networkKey = try loadNetworkKey()
        return GatewayConfiguration().with {
            $0.pools.automatic = (autoPools ?? (localMesh ? "on" : "off")) == "on"
            $0.pools.context = poolContext
            $0.operators = Set(operators.compactMap(NodeID.init))
            $0.pools.idleTimeout = poolIdle
            $0.pools.maxAutomatic = maxAutoPools
            $0.maxContinuations = maxContinuations
            $0.spotChecks.share = spotCheckShare
            $0.allowDegrade = allowDegrade
            $0.allowUnverifiedBackends = allowUnverifiedBackends
            $0.pools.timing.stallAfter = poolStall
            $0.allowedHosts = allowedHosts
            $0.allowedOrigins = allowedOrigins
            $0.headerTimeout = headerTimeout
            $0.idleTimeout = idleTimeout
            $0.maxConnectionsPerAddress = maxConnectionsPerAddress
            $0.host = host
            $0.port = port
            $0.meshHost = mesh.host
            $0.meshPort = mesh.port
            $0.dataDirectory = dataDirectory
            $0.database = database
            $0.networkKey = networkKey
            $0.advertiseHost = advertiseHost
            $0.rateLimitPerMinute = rateLimit
            $0.trustedProxies = Set(trustedProxies)
            $0.limits = RequestLimits(maxTokensCeiling: maxTokens)
            $0.maxBodyBytes = maxBodyBytes
            $0.nodeTTL = ttl
            $0.linkPollInterval = min(.seconds(20), ttl / 3)
            $0.requireAuth = requireAuth
            $0.network = NetworkMode(rawValue: network) ?? .public
            $0.requireDeviceCertificate = requireDeviceCertificate
            $0.reciprocity = Reciprocity(floorTokensPerHour: Double(anonymousTokensPerHour), ceilingTokensPerHour: Double(maxTokensPerHour))
        }
    }

    /// The join string for a gateway with identity `id` (of the network `network`, if any) whose mesh listens on
    /// `port`. Join strings of one network's gateways combine: `a:7070,b:7070#net:<network id>`.
    func joinAddress(id: NodeID, network: NodeID? = nil, port: Int) -> JoinAddress {
        let host = meshAddress(local: false).host
        let wildcard = ["0.0.0.0", "::"].contains(host)
        let endpoint = JoinAddress.Endpoint(host: advertiseHost ?? (wildcard ? ProcessInfo.processInfo.hostName : host), port: port)
        return JoinAddress(endpoints: [endpoint], pin: network.map { .network($0) } ?? .gateway(id))
    }
}

/// `hearth gateway`: the API that apps call, and the mesh that nodes dial.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run a gateway (the OpenAI/Ollama API that routes requests to nodes), or print its join string.",
        subcommands: [GatewayRunCommand.self, JoinStringCommand.self, NetworkKeyCommand.self],
        defaultSubcommand: GatewayRunCommand.self
    )
}

/// `hearth gateway [run]`: serve the API and accept node links.
struct GatewayRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a gateway: the OpenAI/Ollama API that routes requests to nodes, and the mesh port nodes dial.",
        discussion: """
            Prints `JOIN <host>:<port>#<gateway-id>` (`…#net:<network-id>` with --network-key) once the mesh listens \
            and `READY url=<base url>` once the API listens, on standard output; logs go to standard error. Nodes \
            join with: hearth node --join <join string>
            """
    )

    @OptionGroup var gateway: GatewayOptions
    @OptionGroup var catalog: CatalogOptions
    @OptionGroup var shutdown: ShutdownOptions
    @OptionGroup var logging: LoggingOptions
    @OptionGroup var loops: EventLoopOptions

    @Option(help: "Folder for the gateway's key and database (env: HEARTH_DATA_DIR; default: the per-user data folder + /gateway).")
    var dataDir: String?

    func run() async throws {
        let logger = try bootstrapLogging(logging)
        let environment = CommandEnvironment()
        let dataDirectory = dataDir ?? environment.defaultDataDirectory + "/gateway"
        var configuration = try gateway.configuration(dataDirectory: dataDirectory)
        configuration.catalog = try catalog.load(dataDirectory: dataDirectory)
        let network = configuration.networkKey?.nodeID
        let host = configuration.host
        let id = try GatewayIdentity.loadOrCreate(in: configuration.dataDirectory).nodeID
        let options = gateway
        let built = try await buildGateway(
            configuration: configuration,
            logger: logger,
            onServerRunning: { port in say("READY url=http://\(host):\(port)") },
            onMeshListening: { port in say("JOIN \(options.joinAddress(id: id, network: network, port: port))") }
        )
        try await runServices(built.services, drain: shutdown.duration, logger: logger)
    }
}

/// `hearth gateway join-string`: what a node owner passes to `hearth node --join`.
struct JoinStringCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join-string",
        abstract: "Print the string nodes pass to --join: the mesh address and the gateway's key id.",
        discussion: "Creates the gateway's key in --data-dir if there is none yet, exactly as the gateway would."
    )

    @OptionGroup var gateway: GatewayOptions

    @Option(help: "The gateway's data folder (env: HEARTH_DATA_DIR; default: the per-user data folder + /gateway).")
    var dataDir: String?

    func run() throws {
        let directory = dataDir ?? CommandEnvironment().defaultDataDirectory + "/gateway"
        do {
            let id = try GatewayIdentity.loadOrCreate(in: directory).nodeID
            let network = try gateway.loadNetworkKey()?.nodeID
            say("\(gateway.joinAddress(id: id, network: network, port: gateway.meshAddress(local: false).port))")
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

/// How long a stopping process waits for the answers it is serving, shared by `hearth gateway`, `node` and `up`.
struct ShutdownOptions: ParsableArguments {
    @Option(
        help: """
            On SIGTERM or Ctrl-C, wait this long for answers in flight to finish before stopping (e.g. 120s); a node \
            then hands the streams still going over to its gateway, which continues them on another node. A second \
            Ctrl-C stops at once.
            """
    )
    var drainTimeout: String = "120s"

    func validate() throws {
        _ = try parseDuration(drainTimeout, option: "--drain-timeout")
    }

    var duration: Duration { (try? parseDuration(drainTimeout, option: "--drain-timeout")) ?? .seconds(120) }
}

/// Runs services as the process's one `ServiceGroup`, stopping gracefully on SIGTERM and SIGINT.
///
/// The services drain within `drain`; the group allows 15 s more for what follows (closing links, stopping engines)
/// before it cancels what is left. A second Ctrl-C exits at once; engines die with the process (parent-death signal).
func runServices(_ services: [any Service], drain: Duration, logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    let limit = drain + .seconds(15)
    configuration.maximumGracefulShutdownDuration = limit
    let stopAsked = Mutex<ContinuousClock.Instant?>(nil)
    let impatience = Task {
        var interrupts = 0
        for await signal in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
            stopAsked.withLock { $0 = $0 ?? .now }
            guard signal == .sigint else { continue }
            interrupts += 1
            if interrupts == 2 {
                warn("Second Ctrl-C: stopping now, without waiting for answers in flight.")
                exit(130)
            }
        }
    }
    defer { impatience.cancel() }
    // Once the drain has taken its whole time, the group cancels what is still running: a service may then throw
    // CancellationError or return as if it had finished, so the time taken tells it too. Said as what it is.
    do {
        try await ServiceGroup(configuration: configuration).run()
    } catch is CancellationError {
        throw DrainCut(limit: limit)
    }
    // The group's clock started at the same signal a moment before this one's: a quarter second of slack.
    if let asked = stopAsked.withLock({ $0 }), ContinuousClock.now - asked >= limit - .milliseconds(250) {
        throw DrainCut(limit: limit)
    }
}

/// Stopping took longer than the drain allows (a client still waiting on an engine that hangs): what was under way
/// was cut.
struct DrainCut: Error, CustomStringConvertible {
    let limit: Duration

    var description: String {
        "stopped before all work under way had finished: it was still running after --drain-timeout and 15 s more "
            + "(\(Int(limit.components.seconds)) s), so it was cut"
    }
}

/// `hearth gateway network-key`: the key the gateways of one network share.
struct NetworkKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "network-key",
        abstract: "Create the key several gateways share as one network, and print the network id.",
        discussion: """
            Run it once, copy the file to every gateway of the network (it is a secret: mode 0600, like a gateway's own \
            key) and start each with --network-key FILE and the same --database. Nodes then join with every gateway's \
            address and the network id: --join a:7070,b:7070#net:<network id>; they move to the next gateway when one \
            goes away. An existing file is never overwritten: its network id is printed.
            """
    )

    @Option(help: "The key file to create (or read, when it exists).")
    var out: String

    func run() throws {
        do {
            let existed = FileManager.default.fileExists(atPath: out)
            let key = try KeyFile.loadOrCreate(out)
            say("network=\(key.nodeID)")
            say(existed ? "file=\(out) (existing key kept)" : "file=\(out)")
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
