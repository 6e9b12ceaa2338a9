import HearthCore
import NIOHTTP1
import Synchronization

/// Decides which of the node's models are loaded, within the owner's memory limit.
///
/// Each model has its engine supervisor; the host only says which engines should run. At start it loads the models
/// in the owner's order while they fit (the first always). A request for a model that is not loaded loads it,
/// evicting the least-recently-used engines that serve no request until the new one fits (it starts once their
/// processes are gone); the request waits for the engine (and its download) and is refused only when busy engines
/// leave no room.
final class EngineHost: Sendable {
    let engines: [EngineHandle]
    /// Memory the models may use together, in bytes.
    let budget: UInt64
    /// The requests an owner's server takes at once (the node's slots): beyond them, connections to it are not kept,
    /// and no more than this many are kept idle (`EngineAddress.keepsConnection`; a managed engine has its own count,
    /// `EngineHandle.Snapshot.slots`).
    let backendSlots: Int
    /// Told when a request found the owner's server refusing connections: its monitor looks at once
    /// (`BackendMonitorService`), instead of at its next regular look.
    let backendLooks = ChangeSignal()
    private let decisions = Mutex<Void>(())

    init(engines: [EngineHandle], budget: UInt64, backendSlots: Int = .max) {
        self.engines = engines
        self.budget = budget
        self.backendSlots = backendSlots
    }

    /// Which specs load at start: in order while their estimates fit in `budget`; the first always.
    static func initialLoad(_ specs: [ModelSpec], budget: UInt64) -> [Bool] {
        var used: UInt64 = 0
        return specs.enumerated().map { index, spec in
            guard index == 0 || used.addingSaturated(spec.memoryBytes) <= budget else { return false }
            used = used.addingSaturated(spec.memoryBytes)
            return true
        }
    }

    func engine(named name: String) -> EngineHandle? {
        engines.first { $0.serves(name) }
    }

    /// Gets `engine` ready for one request and returns where to send it; the caller calls `engine.end()` when done.
    /// - Throws: `APIFailure` when the model cannot be loaded now (no room, a failed download, a refused file).
    func acquire(_ engine: EngineHandle) async throws(APIFailure) -> EngineAddress {
        engine.begin()
        do {
            try admit(engine)
            return try await ready(engine)
        } catch {
            engine.end()
            throw error
        }
    }

    /// Marks `engine` wanted, evicting idle engines (least recently used first) until it fits.
    func admit(_ engine: EngineHandle) throws(APIFailure) {
        try decisions.withLock { _ throws(APIFailure) in
            if let failure = engine.permanentFailure {
                throw APIFailure(.unavailable, "The node refuses to load \(engine.spec.id): \(failure)", code: "model_refused")
            }
            guard !engine.wanted else { return }
            let others = engines.filter { $0 !== engine && $0.wanted }
            var used = others.reduce(UInt64(0)) { $0.addingSaturated($1.spec.memoryBytes) }
            var victims: [EngineHandle] = []
            for candidate in others.filter({ $0.inFlight == 0 }).sorted(by: { $0.lastUsed < $1.lastUsed }) {
                guard used.addingSaturated(engine.spec.memoryBytes) > budget else { break }
                victims.append(candidate)
                used -= candidate.spec.memoryBytes
            }
            guard used.addingSaturated(engine.spec.memoryBytes) <= budget || others.isEmpty else {
                throw APIFailure(
                    .unavailable,
                    "Not enough memory to load \(engine.spec.id) (\(engine.spec.memoryBytes.binaryBytes)) while other models serve requests.",
                    code: "node_busy"
                )
            }
            for victim in victims { victim.want(false) }
            engine.startAfter(victims)
            engine.want(true)
        }
    }

    /// Waits until the engine is ready, or its load failed.
    private func ready(_ engine: EngineHandle) async throws(APIFailure) -> EngineAddress {
        while true {
            let snapshot = engine.snapshot
            if snapshot.state == .ready, let backend = engine.backend {
                // `inFlight` counts this request (`acquire` began it).
                return EngineAddress(backend: backend, keepsConnection: engine.inFlight <= backendSlots, idleLimit: backendSlots)
            }
            if snapshot.state == .ready, let port = snapshot.port {
                // A pool's head runs its engine with the pool's slots, not the node's.
                return EngineAddress(port: port, keepsConnection: engine.inFlight <= snapshot.slots, idleLimit: snapshot.slots)
            }
            if let failure = engine.permanentFailure {
                throw APIFailure(.unavailable, "The node refuses to load \(engine.spec.id): \(failure)", code: "model_refused")
            }
            if !engine.wanted || snapshot.state == .failed {
                let reason = snapshot.detail ?? "it was unloaded"
                throw APIFailure(.unavailable, "The node could not load \(engine.spec.id): \(reason)", code: "model_not_ready")
            }
            // Every state change rings the node's signal; the deadline only bounds a missed `want(false)`.
            await engine.changes.wait(until: .now + .seconds(1)) { engine.snapshot != snapshot }
            if Task.isCancelled {
                throw APIFailure(.unavailable, "The request was cancelled while \(engine.spec.id) loaded.", code: "model_not_ready")
            }
        }
    }
}

/// Where one request for a model goes: a managed engine on a loopback port, or the owner's own server.
/// A model of the owner's own server: where it is asked, under which name, and with which key.
struct BackendModel: Sendable, Equatable {
    /// Up to and including `/v1` (`BackendSettings.parse`).
    let baseURL: String
    /// The server's name for the model (`/v1/models`).
    let name: String
    let apiKey: String?
    /// Where the server listens, read from `baseURL` once rather than for every request; `nil` for a URL
    /// `EngineConnection` cannot take.
    let endpoint: EngineEndpoint?

    /// The authorities its certificate may come from beside the system's roots, for an `https` server.
    let trust: BackendTrust?

    init(baseURL: String, name: String, apiKey: String?, trust: BackendTrust? = nil) {
        self.baseURL = baseURL
        self.name = name
        self.apiKey = apiKey
        self.trust = trust
        endpoint = EngineEndpoint(root: BackendSettings.root(of: baseURL))
    }
}

struct EngineAddress: Sendable, Equatable {
    /// Scheme, host and port (and any path before `/v1`): request paths such as `/v1/chat/completions` follow it.
    let root: String
    /// A managed llama-server's port: only there are llama.cpp's own routes (`/apply-template`, `/tokenize`).
    let port: Int?
    /// The owner's server's name for the model, which requests must carry instead of the catalog id.
    let backendName: String?
    /// Whether the request's connection stays open for the next one (`EngineConnection`): while the node sends the
    /// engine no more requests at once than its slots; past them each request closes its own.
    ///
    /// llama-server's HTTP server serves each open connection on a thread of a fixed pool, so a connection kept idle
    /// holds a thread. The node keeps at most `idleLimit` (its slots) idle beside the at most slots requests it sends
    /// while keeping, and starts its managed engines with a pool for both (`--threads-http`, twice the slots and two
    /// for the node's looks): a new request never waits for a thread behind idle connections. An owner's server sized
    /// to the node's slots has its default pool (slots and two); the node's connections to it are made on the one
    /// event loop of its link, where those kept idle are the ones the next requests take, so they stay within that.
    /// Reusing a connection saves a connect and the server's accept for every request: 0.7–0.8 ms less added latency
    /// for a one-token answer through `hearth up`; through a `--backend` node, 0.4–0.7 ms and a fifth of the node's
    /// CPU per whole answer.
    let keepsConnection: Bool
    /// How many connections to this engine may wait idle at once, over all of the node's event loops.
    let idleLimit: Int

    /// Where the engine listens, for `EngineConnection`; `nil` for an owner's URL it cannot take.
    let endpoint: EngineEndpoint?

    init(port: Int, keepsConnection: Bool = false, idleLimit: Int = 0) {
        root = "http://127.0.0.1:\(port)"
        endpoint = EngineEndpoint(loopbackPort: port)
        self.port = port
        backendName = nil
        apiKey = nil
        trust = nil
        self.keepsConnection = keepsConnection
        self.idleLimit = idleLimit
    }

    init(backend: BackendModel, keepsConnection: Bool = false, idleLimit: Int = 0) {
        root = BackendSettings.root(of: backend.baseURL)
        endpoint = backend.endpoint
        port = nil
        backendName = backend.name
        apiKey = backend.apiKey
        trust = backend.trust
        self.keepsConnection = keepsConnection
        self.idleLimit = idleLimit
    }

    /// The key the owner's server asks for, if it asks for one.
    let apiKey: String?
    /// Authorities the owner's `https` server's certificate may come from beside the system's roots.
    let trust: BackendTrust?

    /// The headers of a request to the engine through `EngineConnection`. llama-server closes its connection after a
    /// streamed answer whatever its head said, so a stream to a managed engine closes its own rather than leave one to
    /// be found closed by the next request.
    func requestHeaders(streaming: Bool) -> HTTPHeaders { requestHeaders(keeping: keepsConnection && !(streaming && port != nil)) }

    /// The headers of a request through `EngineClient` (AsyncHTTPClient, whose kept connections `idleLimit` does not
    /// count): a managed engine's connection closes after it, since its thread pool has no room for them.
    var clientRequestHeaders: HTTPHeaders { requestHeaders(keeping: keepsConnection && port == nil) }

    private func requestHeaders(keeping: Bool) -> HTTPHeaders {
        var headers: HTTPHeaders = ["content-type": "application/json"]
        if !keeping { headers.add(name: "connection", value: "close") }
        if let apiKey { headers.add(name: "authorization", value: "Bearer " + apiKey) }
        return headers
    }

    func url(_ path: String) -> String { root + path }
}
