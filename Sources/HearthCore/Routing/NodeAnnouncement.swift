/// What the gateway knows about a node: the NodeID proven by the link's TLS handshake, the account that certified
/// it, and the node's latest report. In JSON the report's fields sit beside `nodeID` and `account`.
@dynamicMemberLookup
package struct NodeAnnouncement: Codable, Sendable, Equatable {
    /// Proven by the link, never read from a message body.
    package var nodeID: NodeID
    /// The account whose device certificate the node presented, if any.
    package var account: NodeID?
    var report: NodeReport

    /// What the gateway records for the node proven as `nodeID` (certified for `account`) when it sends `report`.
    package init(nodeID: NodeID, account: NodeID? = nil, report: NodeReport) {
        self.nodeID = nodeID
        self.account = account
        self.report = report
    }

    /// The report's fields, read and written in place: `announcement.models`, `announcement.draining`.
    package subscript<Value>(dynamicMember path: WritableKeyPath<NodeReport, Value>) -> Value {
        get { report[keyPath: path] }
        set { report[keyPath: path] = newValue }
    }

    private enum CodingKeys: String, CodingKey {
        case nodeID, account
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        nodeID = try container.decode(NodeID.self, forKey: .nodeID)
        account = try container.decodeIfPresent(NodeID.self, forKey: .account)
        report = try NodeReport(from: decoder)
    }

    package func encode(to encoder: any Encoder) throws {
        try report.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(nodeID, forKey: .nodeID)
        try container.encodeIfPresent(account, forKey: .account)
    }
}

/// What a node says about itself over its link when the gateway asks. It carries no NodeID: the link proves that.
package struct NodeReport: Codable, Sendable, Equatable {
    package var name: String
    var hardware: HardwareProfile
    package var limits: NodeLimits
    package var models: [ServedModel]
    package var inFlight: Int
    package var draining: Bool
    var version: String
    /// Changes whenever an engine changes state or the node starts draining. The gateway's long poll passes the
    /// last one it saw and the node answers as soon as it differs.
    package var revision: String
    /// How the node confines its engines (absent from nodes older than the sandbox).
    var sandbox: EngineSandboxReport?
    /// What the node lends to pools, if its owner opted in, and the pool work it runs.
    package var pool: PoolOffer?

    package init(
        name: String,
        hardware: HardwareProfile,
        limits: NodeLimits,
        models: [ServedModel],
        inFlight: Int,
        draining: Bool,
        version: String,
        sandbox: EngineSandboxReport? = nil,
        pool: PoolOffer? = nil
    ) {
        self.name = name
        self.hardware = hardware
        self.limits = limits
        self.models = models
        self.inFlight = inFlight
        self.draining = draining
        self.version = version
        self.revision = Self.revision(models: models, draining: draining, pool: pool?.work ?? [])
        self.sandbox = sandbox
        self.pool = pool
    }

    /// The revision of a state: engine states in order, whether the node drains, then its pool work.
    package static func revision(models: [ServedModel], draining: Bool, pool work: [PoolWorkStatus] = []) -> String {
        models.map { "\($0.id)=\($0.state.rawValue)\($0.backend?.verified == false ? "?" : "")" }.joined(separator: ",")
            + (draining ? ";draining" : ";serving")
            + work.map { ";\($0.pool)/\($0.epoch)/\($0.role.rawValue)=\($0.state.rawValue)\(($0.stalledSeconds ?? 0) > 0 ? "+stalled" : "")" }
            .joined()
    }
}

extension NodeReport {
    /// Bounds on what a node may claim. A report is the one document a node writes that the gateway keeps and
    /// computes with (routing order, capacity planning, pages), so out-of-range numbers and huge strings are refused
    /// rather than clamped: a node that sends them is broken or hostile.
    package enum Bound {
        package static let models = 256
        package static let aliases = 32
        package static let text = 256
        package static let detail = 4096
        package static let gpus = 64
        package static let count = 1 << 20
        package static let tokens = 1 << 24
    }

    /// Checks the report against `Bound`.
    /// - Throws: `ReportError` naming the first field out of range.
    package func validate() throws(ReportError) {
        func text(_ value: String, _ field: String, limit: Int = Bound.text) throws(ReportError) {
            guard value.utf8.count <= limit else { throw ReportError(field: field, problem: "is longer than \(limit) bytes") }
        }
        func range(_ value: Int, _ field: String, _ bounds: ClosedRange<Int>) throws(ReportError) {
            guard bounds.contains(value) else { throw ReportError(field: field, problem: "is outside \(bounds.lowerBound)...\(bounds.upperBound)") }
        }
        try text(name, "name")
        try text(version, "version")
        try text(revision, "revision", limit: Bound.models * (2 * Bound.text + 16))
        if let sandbox {
            try text(sandbox.user, "sandbox.user")
            try text(sandbox.limits, "sandbox.limits")
            guard sandbox.blockers.count <= Bound.gpus else { throw ReportError(field: "sandbox.blockers", problem: "lists more than \(Bound.gpus)") }
            for blocker in sandbox.blockers { try text(blocker, "sandbox.blockers", limit: Bound.detail) }
        }
        if let pool {
            try range(pool.threads, "pool.threads", 1...Bound.count)
            try text(pool.build.rpcProtocol, "pool.build.rpcProtocol")
            try text(pool.build.architecture, "pool.build.architecture")
            try text(pool.build.byteOrder, "pool.build.byteOrder")
            guard pool.files.count <= Bound.models, pool.cached.count <= Bound.models, pool.work.count <= Bound.models else {
                throw ReportError(field: "pool", problem: "lists more than \(Bound.models) files, cached models or pieces of work")
            }
            for work in pool.work {
                try range(work.epoch, "pool.work.epoch", 0...Int(Int32.max))
                try range(work.stalledSeconds ?? 0, "pool.work.stalledSeconds", 0...Bound.tokens)
                if let detail = work.detail { try text(detail, "pool.work.detail", limit: Bound.detail) }
            }
        }
        try range(hardware.cpuCores, "hardware.cpuCores", 0...Bound.count)
        guard hardware.gpus.count <= Bound.gpus else { throw ReportError(field: "hardware.gpus", problem: "lists more than \(Bound.gpus)") }
        for gpu in hardware.gpus { try text(gpu, "hardware.gpus") }
        try range(limits.threads, "limits.threads", 1...Bound.count)
        try range(limits.contextSize, "limits.contextSize", 1...Bound.tokens)
        try range(limits.parallelSlots, "limits.parallelSlots", 1...Bound.count)
        try range(inFlight, "inFlight", 0...Bound.count)
        guard models.count <= Bound.models else { throw ReportError(field: "models", problem: "lists more than \(Bound.models)") }
        for model in models {
            try range(model.contextLength, "models.contextLength", 0...Bound.tokens)
            guard model.aliases.count <= Bound.aliases else {
                throw ReportError(field: "models.aliases", problem: "lists more than \(Bound.aliases)")
            }
            if let detail = model.detail { try text(detail, "models.detail", limit: Bound.detail) }
            if let backend = model.backend {
                try text(backend.kind, "models.backend.kind", limit: Bound.text)
                try text(backend.evidence, "models.backend.evidence", limit: Bound.detail)
            }
        }
    }
}

/// A node's report was refused.
package struct ReportError: Error, Sendable, Equatable, CustomStringConvertible {
    var field: String
    var problem: String
    package var description: String { "the node's report is refused: \(field) \(problem)" }

    package init(field: String, problem: String) {
        self.field = field
        self.problem = problem
    }
}

/// What the machine has, as probed for each report.
package struct HardwareProfile: Codable, Sendable, Equatable {
    var cpuCores: Int
    var memoryTotalBytes: UInt64
    package var memoryAvailableBytes: UInt64
    var diskFreeBytes: UInt64
    var gpus: [String]

    package init(cpuCores: Int, memoryTotalBytes: UInt64, memoryAvailableBytes: UInt64, diskFreeBytes: UInt64, gpus: [String]) {
        self.cpuCores = cpuCores
        self.memoryTotalBytes = memoryTotalBytes
        self.memoryAvailableBytes = memoryAvailableBytes
        self.diskFreeBytes = diskFreeBytes
        self.gpus = gpus
    }
}

/// The owner's limits for what the node gives to the network.
package struct NodeLimits: Codable, Sendable, Equatable {
    /// CPU threads the engine may use.
    package var threads: Int
    /// Context size (tokens) of each engine.
    package var contextSize: Int
    /// Requests an engine serves at once (llama-server `--parallel`).
    package var parallelSlots: Int
    /// Memory the owner lets the node's models use, in bytes; `nil` leaves it to the machine's available memory.
    package var memoryBytes: UInt64?

    package init(threads: Int, contextSize: Int, parallelSlots: Int, memoryBytes: UInt64? = nil) {
        self.threads = threads
        self.contextSize = contextSize
        self.parallelSlots = parallelSlots
        self.memoryBytes = memoryBytes
    }
}

/// The life of one engine, as the node reports it.
package enum EngineState: String, Codable, Sendable, Equatable {
    /// On the node's list but not loaded: the node loads it (downloading it if needed) on the first request.
    case standby
    case loading
    case ready
    case failed
}

/// A model the node serves, identified by name and by the SHA-256 of its GGUF file.
package struct ServedModel: Codable, Sendable, Equatable {
    package var id: ModelID
    /// Other names the owner declared for this model. Matched exactly, like the id.
    package var aliases: [ModelID]
    package var sha256: SHA256Digest
    package var contextLength: Int
    package var sizeBytes: UInt64
    package var state: EngineState
    /// Why the engine is not ready, when it failed.
    var detail: String?
    /// The pool this engine is the head of, when it serves a model split over several nodes.
    package var pool: PoolID?
    /// Its engine answers `/v1/embeddings` too (started with `--embeddings`); absent when it does not.
    package var embeddings: Bool?
    /// The owner's own server answers for it (`--backend`), not an engine the node runs; absent for managed engines.
    package var backend: ExternalBackend?

    package init(
        id: ModelID,
        aliases: [ModelID] = [],
        sha256: SHA256Digest,
        contextLength: Int,
        sizeBytes: UInt64,
        state: EngineState,
        detail: String? = nil,
        pool: PoolID? = nil,
        embeddings: Bool? = nil,
        backend: ExternalBackend? = nil
    ) {
        self.embeddings = embeddings
        self.backend = backend
        self.id = id
        self.aliases = aliases
        self.sha256 = sha256
        self.contextLength = contextLength
        self.sizeBytes = sizeBytes
        self.state = state
        self.detail = detail
        self.pool = pool
    }
}

/// A model a node serves through the owner's own OpenAI-compatible server, and what the node could check of it.
///
/// The node maps the server's model name to a catalog id; the catalog's sha256 is what the owner states the server
/// serves. `verified` says whether the node could check that (Ollama's blob digest, or the file llama-server names,
/// hashed); `evidence` says how, or why it could not. A server found serving another file is not reported ready at
/// all. The gateway routes to unverified ones only when its operator allows it (`--allow-unverified-backends`).
package struct ExternalBackend: Codable, Sendable, Equatable {
    /// The protocol the node speaks to it: `openai`.
    var kind: String
    package var verified: Bool
    package var evidence: String

    package init(kind: String, verified: Bool, evidence: String) {
        self.kind = kind
        self.verified = verified
        self.evidence = evidence
    }
}
