public import HearthCore
import Synchronization

/// The live state of one engine, shared by its supervisor (which writes it), the node's routes and its reports.
public final class EngineHandle: Sendable {
    public struct Snapshot: Sendable, Equatable {
        public var state: EngineState
        /// The loopback port the engine listens on, while it runs.
        public var port: Int?
        public var detail: String?
        /// Engine starts so far (1 after the first start).
        public var starts: Int
        public var pid: Int32?

        /// The model file's size, once it exists.
        public var sizeBytes: UInt64
    }

    public let spec: ModelSpec
    private let current = Mutex(Snapshot(state: .loading, port: nil, detail: "preparing", starts: 0, pid: nil, sizeBytes: 0))

    init(spec: ModelSpec) {
        self.spec = spec
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
