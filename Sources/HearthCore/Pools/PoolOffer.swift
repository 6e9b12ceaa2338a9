/// Which engine a node runs, as far as pooling cares. llama.cpp's RPC sends raw host-endian structs that hold
/// pointers, so only nodes whose builds agree on all of this may serve one model together.
package struct EngineBuild: Codable, Sendable, Hashable, CustomStringConvertible {
    /// llama.cpp's build number (its tag `bN`).
    package var llamaCpp: Int
    /// The RPC protocol version of that build.
    package var rpcProtocol: String
    /// CPU architecture, as Swift names it (`x86_64`, `arm64`).
    package var architecture: String
    /// `little` or `big`.
    package var byteOrder: String

    package init(llamaCpp: Int, rpcProtocol: String, architecture: String, byteOrder: String) {
        self.llamaCpp = llamaCpp
        self.rpcProtocol = rpcProtocol
        self.architecture = architecture
        self.byteOrder = byteOrder
    }

    /// The pinned build on this machine.
    package static let current = EngineBuild(
        llamaCpp: EnginePins.llamaCppBuildNumber,
        rpcProtocol: EnginePins.rpcProtocol,
        architecture: currentArchitecture,
        byteOrder: 1.littleEndian == 1 ? "little" : "big"
    )

    private static var currentArchitecture: String {
        #if arch(x86_64)
        "x86_64"
        #elseif arch(arm64)
        "arm64"
        #elseif arch(riscv64)
        "riscv64"
        #else
        "other"
        #endif
    }

    /// One string for logs and listings: `b11434 rpc 7.0.0 x86_64 little-endian`.
    package var description: String { "b\(llamaCpp) rpc \(rpcProtocol) \(architecture) \(byteOrder)-endian" }
}

/// What a node lends to pools, in its report. Absent when the owner has not opted in.
package struct PoolOffer: Codable, Sendable, Equatable {
    /// Memory the node gives to pool work (members' rpc-servers and heads), beside its own engines.
    package var memoryBytes: UInt64
    /// CPU threads each rpc-server or head may use.
    package var threads: Int
    package var build: EngineBuild
    /// Whether the node can run a head: it fetches catalog files (or holds them).
    package var canHead: Bool
    /// Models whose GGUF file the node holds (it can head them without a download).
    package var files: [SHA256Digest]
    /// Models whose tensors the node's rpc cache holds from earlier pools (less to send when it serves them again).
    package var cached: [SHA256Digest]
    /// The pool work it runs now, as the gateway asked.
    package var work: [PoolWorkStatus]

    package init(
        memoryBytes: UInt64,
        threads: Int,
        build: EngineBuild = .current,
        canHead: Bool,
        files: [SHA256Digest] = [],
        cached: [SHA256Digest] = [],
        work: [PoolWorkStatus] = []
    ) {
        self.memoryBytes = memoryBytes
        self.threads = threads
        self.build = build
        self.canHead = canHead
        self.files = files
        self.cached = cached
        self.work = work
    }
}

/// One piece of pool work on a node: a member's rpc-server or a pool's head.
package struct PoolWorkStatus: Codable, Sendable, Equatable {
    package enum Role: String, Codable, Sendable {
        case member
        case head
    }

    package enum State: String, Codable, Sendable {
        case starting
        case ready
        /// It exited or never became ready; `detail` says how.
        case failed
    }

    package var pool: PoolID
    /// Which plan of the pool it belongs to: the gateway ignores news of work from a plan it has replaced.
    package var epoch: Int
    package var role: Role
    package var state: State
    /// What the head's engine is doing (`loading 40 %`) or why it failed.
    package var detail: String?
    /// Head only: how long a busy slot has made no token progress (`nil` or 0: none stuck).
    package var stalledSeconds: Int?

    package init(pool: PoolID, epoch: Int, role: Role, state: State, detail: String? = nil, stalledSeconds: Int? = nil) {
        self.pool = pool
        self.epoch = epoch
        self.role = role
        self.state = state
        self.detail = detail
        self.stalledSeconds = stalledSeconds
    }
}

/// A pool's name: `p-` and 12 lowercase hex digits, chosen by the gateway that planned it.
package struct PoolID: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    package let rawValue: String

    package init?(_ rawValue: String) {
        let digits = rawValue.utf8.dropFirst(2)
        guard rawValue.hasPrefix("p-"), digits.count == 12, digits.allSatisfy({ Hex.isLowercaseDigit($0) }) else { return nil }
        self.rawValue = rawValue
    }

    /// A fresh random id.
    package static func random() -> PoolID { PoolID("p-" + Hex.random(bytes: 6))! }

    package var description: String { rawValue }
    package static func < (lhs: PoolID, rhs: PoolID) -> Bool { lhs.rawValue < rhs.rawValue }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard let id = PoolID(try container.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "a pool id is p- and 12 lowercase hex digits")
        }
        self = id
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The gateway's instruction to serve a node's part of a pool: the whole plan, so the node can check that it is in
/// it, with what share, and on which build.
package struct PoolAssignment: Codable, Sendable, Equatable {
    package var pool: PoolID
    package var epoch: Int
    package var plan: PoolPlan

    package init(pool: PoolID, epoch: Int, plan: PoolPlan) {
        self.pool = pool
        self.epoch = epoch
        self.plan = plan
    }
}
