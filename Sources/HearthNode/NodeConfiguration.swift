public import HearthCore

/// Everything a node needs to start. Every field has a default.
public struct NodeConfiguration: Sendable {
    /// Address of the node's API, which the gateway calls. Loopback by default.
    public var host: String = "127.0.0.1"
    /// TCP port of the node's API; 0 picks a free one.
    public var port: Int = 0
    /// The URL the gateway should use to reach this node; derived from host and bound port when `nil`.
    public var advertisedURL: String?
    /// The gateway to announce to, e.g. `http://127.0.0.1:8080`.
    public var gatewayURL: String = "http://127.0.0.1:8080"
    /// Resolves the gateway URL when a heartbeat is sent; overrides `gatewayURL`. `hearth up` uses it because its
    /// gateway's port is known only once it listens.
    public var gatewayURLProvider: (@Sendable () async -> String)?
    /// Folder for the node's identity and state.
    public var dataDirectory: String = "."
    /// A name for this node in listings; the host name by default.
    public var name: String = "node"
    /// The models to serve, each with its own engine.
    public var models: [ModelSpec] = []
    /// The owner's limits.
    public var limits: NodeLimits = NodeLimits(threads: 2, contextSize: 2048, parallelSlots: 2)
    /// The `llama-server` binary to run.
    public var llamaServerPath: String = "llama-server"
    /// Work that must finish before the first engine starts, such as building llama.cpp and fetching the default
    /// model. It runs once, inside the node's lifetime: the node heartbeats meanwhile and reports its engines as
    /// loading, so a long build or download never hides it from the gateway.
    public var prepare: (@Sendable () async throws -> Void)?
    /// Further `llama-server` arguments, as the owner gives them.
    public var extraEngineArguments: [String] = []
    /// Time between heartbeats.
    public var heartbeatInterval: Duration = .seconds(5)
    /// Longest wait for an engine to report healthy before it counts as failed and is restarted.
    public var engineStartTimeout: Duration = .seconds(120)
    /// Longest wait for streams in flight when the node shuts down.
    public var drainTimeout: Duration = .seconds(8)

    public init() {}

    /// Returns a copy with `change` applied.
    public func with(_ change: (inout NodeConfiguration) -> Void) -> NodeConfiguration {
        var copy = self
        change(&copy)
        return copy
    }
}

/// One model the node serves: the GGUF file, its expected SHA-256, and the names clients use.
public struct ModelSpec: Sendable, Equatable, Codable {
    public var id: ModelID
    public var aliases: [ModelID]
    public var path: String
    public var sha256: SHA256Digest

    public init(id: ModelID, aliases: [ModelID] = [], path: String, sha256: SHA256Digest) {
        self.id = id
        self.aliases = aliases
        self.path = path
        self.sha256 = sha256
    }
}
