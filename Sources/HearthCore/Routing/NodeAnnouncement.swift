/// What a node tells the gateway about itself, on joining and on every heartbeat.
public struct NodeAnnouncement: Codable, Sendable, Equatable {
    public var nodeID: NodeID
    /// A human-readable name chosen by the owner (host name by default).
    public var name: String
    /// Where the gateway reaches the node's API. Plain HTTP in this release; the secure mesh replaces it.
    public var endpoint: String
    public var hardware: HardwareProfile
    public var limits: NodeLimits
    public var models: [ServedModel]
    /// Requests the node is serving right now.
    public var inFlight: Int
    /// The node is shutting down: it finishes what it has and takes nothing new.
    public var draining: Bool
    public var version: String

    public init(
        nodeID: NodeID,
        name: String,
        endpoint: String,
        hardware: HardwareProfile,
        limits: NodeLimits,
        models: [ServedModel],
        inFlight: Int,
        draining: Bool,
        version: String
    ) {
        self.nodeID = nodeID
        self.name = name
        self.endpoint = endpoint
        self.hardware = hardware
        self.limits = limits
        self.models = models
        self.inFlight = inFlight
        self.draining = draining
        self.version = version
    }
}

/// What the machine has, as probed at start and refreshed on heartbeats.
public struct HardwareProfile: Codable, Sendable, Equatable {
    public var cpuCores: Int
    public var memoryTotalBytes: UInt64
    public var memoryAvailableBytes: UInt64
    public var diskFreeBytes: UInt64
    public var gpus: [String]

    public init(cpuCores: Int, memoryTotalBytes: UInt64, memoryAvailableBytes: UInt64, diskFreeBytes: UInt64, gpus: [String]) {
        self.cpuCores = cpuCores
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes
        self.diskFreeBytes = diskFreeBytes
        self.gpus = gpus
    }
}

/// The owner's limits for what the node gives to the network.
public struct NodeLimits: Codable, Sendable, Equatable {
    /// CPU threads the engine may use.
    public var threads: Int
    /// Context size (tokens) of each engine.
    public var contextSize: Int
    /// Requests an engine serves at once (llama-server `--parallel`).
    public var parallelSlots: Int

    public init(threads: Int, contextSize: Int, parallelSlots: Int) {
        self.threads = threads
        self.contextSize = contextSize
        self.parallelSlots = parallelSlots
    }
}

/// The life of one engine, as the node reports it.
public enum EngineState: String, Codable, Sendable, Equatable {
    case loading
    case ready
    case failed
}

/// A model the node serves, identified by name and by the SHA-256 of its GGUF file.
public struct ServedModel: Codable, Sendable, Equatable {
    public var id: ModelID
    /// Other names the owner declared for this model. Matched exactly, like the id.
    public var aliases: [ModelID]
    public var sha256: SHA256Digest
    public var contextLength: Int
    public var sizeBytes: UInt64
    public var state: EngineState
    /// Why the engine is not ready, when it failed.
    public var detail: String?

    public init(
        id: ModelID,
        aliases: [ModelID] = [],
        sha256: SHA256Digest,
        contextLength: Int,
        sizeBytes: UInt64,
        state: EngineState,
        detail: String? = nil
    ) {
        self.id = id
        self.aliases = aliases
        self.sha256 = sha256
        self.contextLength = contextLength
        self.sizeBytes = sizeBytes
        self.state = state
        self.detail = detail
    }
}
