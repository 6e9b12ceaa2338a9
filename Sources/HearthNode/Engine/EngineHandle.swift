public import HearthCore
import Synchronization

/// The live state of one engine, shared by its supervisor (which writes it), the node's routes and the heartbeat.
public final class EngineHandle: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var state: EngineState
        /// The loopback port the engine listens on, while it runs.
        public var port: Int?
        public var detail: String?
        /// Engine starts so far (1 after the first start).
        public var starts: Int
        public var pid: Int32?
    }

    public let spec: ModelSpec
    public let sizeBytes: UInt64
    private let current = Mutex(Snapshot(state: .loading, port: nil, detail: nil, starts: 0, pid: nil))

    init(spec: ModelSpec, sizeBytes: UInt64) {
        self.spec = spec
        self.sizeBytes = sizeBytes
    }

    public var snapshot: Snapshot { current.withLock { $0 } }

    func update(_ change: (inout Snapshot) -> Void) {
        current.withLock { change(&$0) }
    }

    /// Whether `name` names this engine's model, by id or declared alias (exactly).
    func serves(_ name: String) -> Bool {
        spec.id.rawValue == name || spec.aliases.contains { $0.rawValue == name }
    }
}
