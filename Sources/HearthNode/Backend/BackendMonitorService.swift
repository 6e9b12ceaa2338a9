import AsyncHTTPClient
import Foundation
import HearthCore
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization

/// Watches the owner's own OpenAI-compatible server (`--backend`) for the node's mapped models, every
/// `checkInterval`: a model the server lists is reported ready, with what the node could check of its file
/// (`BackendCheck`); one it does not list, or whose file is not the pinned one, is reported failed and never served;
/// all are reported failed when the server leaves two looks in a row unanswered (the second soon after the first).
/// A request that found the server refusing connections asks for a look at once (`lookNow`): the models are then
/// off the gateway's routes within seconds of the server stopping, whatever the interval.
struct BackendMonitorService: Service {
    let settings: BackendSettings
    /// The handles of the mapped models (each with its `backend`).
    let engines: [EngineHandle]
    /// Notified by the node's requests when the server refused their connection (`EngineHost.backendLooks`).
    let lookNow: ChangeSignal
    let logger: Logger
    /// How long one look may take before it counts as unanswered.
    var lookTimeout: Duration = .seconds(10)

    /// Files already hashed, by path, size and modification time: a 100 MB file is hashed once, not every check.
    private final class DigestCache: Sendable {
        private let entries = Mutex<[String: (size: UInt64, modified: Date, digest: SHA256Digest)]>([:])

        /// The file's sha256; `nil` when it cannot be read, or is no regular file (a server naming `/dev/zero` must not
        /// keep the node hashing for ever).
        func digest(of named: String) async -> SHA256Digest? {
            let path = URL(fileURLWithPath: named).resolvingSymlinksInPath().path
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                attributes[.type] as? FileAttributeType == .typeRegular,
                let size = (attributes[.size] as? NSNumber)?.uint64Value, let modified = attributes[.modificationDate] as? Date
            else { return nil }
            if let known = entries.withLock({ $0[path] }), known.size == size, known.modified == modified { return known.digest }
            guard let digest = try? await FileDigest.sha256(ofFileAt: path) else { return nil }
            entries.withLock { $0[path] = (size, modified, digest) }
            return digest
        }
    }

    private let digests = DigestCache()

    /// Per model, the looks in a row that left the question about its file unanswered (`BackendCheck.Evidence
    /// .unanswered`). The server listed the model each time, so such a look is a miss like an unanswered list: the
    /// model's report stands until the second in a row. A single slow `/props` (a busy server) marked a verified model
    /// unverified, and so took it off the gateway's routes until the next look.
    private final class EvidenceMisses: Sendable {
        private let counts = Mutex<[ModelID: Int]>([:])

        /// Counts one more unanswered look at `model`'s file; returns the looks in a row now.
        func add(_ model: ModelID) -> Int {
            counts.withLock { counts in
                counts[model, default: 0] += 1
                return counts[model]!
            }
        }

        func clear(_ model: ModelID) {
            _ = counts.withLock { $0.removeValue(forKey: model) }
        }

        /// Whether some model's report stands on a miss, to be looked at again soon.
        var pending: Bool { counts.withLock { !$0.isEmpty } }
    }

    private let evidenceMisses = EvidenceMisses()

    init(settings: BackendSettings, engines: [EngineHandle], lookNow: ChangeSignal = ChangeSignal(), logger: Logger) {
        self.settings = settings
        self.engines = engines
        self.lookNow = lookNow
        self.logger = logger
    }

    /// Looks in a row the server may leave unanswered before its models are reported failed: one slow answer (a server
    /// busy loading a model, a laptop waking up) must not take them off the gateway's routes until the next look. A
    /// definite answer (no such model, another file, the key refused) counts at once.
    static let missesBeforeFailing = 2

    /// How soon the node looks again after a look went unanswered and the models are still offered.
    var lookAgainAfterMiss: Duration { min(settings.checkInterval, .seconds(3)) }

    /// The least time between two looks that requests asked for: a burst of refused requests asks for one look, not a
    /// look each.
    static let lookNowSpacing: Duration = .seconds(1)

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var misses = 0
            while !Task.isCancelled {
                let looked = ContinuousClock.now
                let asked = lookNow.generation
                misses = await check(missesBefore: misses)
                let inGrace = (misses > 0 && misses < Self.missesBeforeFailing) || (misses == 0 && evidenceMisses.pending)
                let next = looked + (inGrace ? lookAgainAfterMiss : settings.checkInterval)
                await lookNow.wait(until: next) { lookNow.generation != asked }
                if ContinuousClock.now < next { try await Task.sleep(until: min(next, looked + Self.lookNowSpacing)) }
            }
        }
    }

    /// One look at the server for every mapped model, after `missesBefore` unanswered looks in a row; returns how many
    /// are unanswered in a row now (0 when the server answered, whatever it said).
    func check(missesBefore: Int) async -> Int {
        let root = BackendSettings.root(of: settings.baseURL)
        let listed: [String]
        do {
            let answer = try await exchange(settings.baseURL + "/models")
            guard let names = BackendCheck.listedModels(answer) else { throw BackendAnswerError("its /v1/models is not a model list") }
            listed = names
        } catch let refusal as BackendAnswerError where refusal.refusesTheKey {
            // Said in the report too (without the address): the owner has a key to give, or to correct.
            logger.warning("the owner's server refuses the node's key", metadata: ["node.backend.url": "\(settings.baseURL)", "error": "\(refusal)"])
            let detail =
                settings.apiKey == nil
                ? "the owner's server asks for a key (HTTP \(refusal.status ?? 401)): give it with --backend-api-key-file"
                : "the owner's server refuses the key this node gives (HTTP \(refusal.status ?? 401))"
            for engine in engines { apply(.refused(detail), to: engine) }
            return 0
        } catch {
            // The report says only that it does not answer: the server's address is the owner's own network's, which a
            // public gateway's node list must not show. The owner's log has it.
            let why = error is CancellationError || (error as? HTTPClientError) == .deadlineExceeded ? "no answer within \(lookTimeout)" : "\(error)"
            let detail =
                Self.distrustsCertificate(error)
                ? "the owner's server's TLS certificate is not trusted: give its authority with --backend-ca-file"
                : "the owner's server does not answer" + (Self.refusesConnections(error) ? ": it refuses connections" : "")
            let misses = missesBefore + 1
            guard misses >= Self.missesBeforeFailing else {
                logger.warning(
                    "the owner's server does not answer: its models stay offered until it misses the next look too",
                    metadata: ["node.backend.url": "\(settings.baseURL)", "error": "\(why)", "node.backend.next_look": "\(lookAgainAfterMiss)"]
                )
                return misses
            }
            logger.warning("the owner's server does not answer", metadata: ["node.backend.url": "\(settings.baseURL)", "error": "\(why)"])
            for engine in engines { apply(.refused(detail), to: engine) }
            return misses
        }
        for engine in engines {
            guard let backend = engine.backend else { continue }
            guard listed.contains(backend.name) else {
                let others = listed.prefix(8).joined(separator: ", ")
                apply(.refused("the owner's server lists no model '\(backend.name)' (it lists: \(others.isEmpty ? "none" : others))"), to: engine)
                continue
            }
            let evidence = await evidence(for: backend.name, root: root)
            if evidence != .unanswered {
                evidenceMisses.clear(engine.spec.id)
            } else if evidenceMisses.add(engine.spec.id) < Self.missesBeforeFailing {
                logger.warning(
                    "the owner's server left the question about a model's file unanswered: its report stands until the next look",
                    metadata: ["node.model": "\(engine.spec.id)", "node.backend.next_look": "\(lookAgainAfterMiss)"]
                )
                continue
            }
            apply(BackendCheck.verdict(evidence: evidence, pinned: engine.spec.sha256), to: engine)
        }
        return 0
    }

    /// What the server says about the file behind `name`: Ollama's blob first (hashed too where this node can read it:
    /// an Ollama on the same machine), then llama-server's loaded file; `.unanswered` when neither said and one of
    /// them did not answer (a server without the route answers it 404, which is an answer).
    private func evidence(for name: String, root: String) async -> BackendCheck.Evidence {
        var unanswered = false
        do {
            if let blob = BackendCheck.ollamaBlob(try await exchange(root + "/api/show", body: ["model": .string(name)])) {
                return .ollamaBlob(blob.digest, hashed: await digests.digest(of: blob.path))
            }
        } catch {
            unanswered = unanswered || noteUnanswered(error, route: "/api/show")
        }
        do {
            if let path = BackendCheck.loadedFile(try await exchange(root + "/props")) {
                return .file(path: path, sha256: await digests.digest(of: path))
            }
        } catch {
            unanswered = unanswered || noteUnanswered(error, route: "/props")
        }
        return unanswered ? .unanswered : .none
    }

    /// Whether `error` left the question on `route` unanswered (logged, with the owner's address, which the report
    /// leaves out), rather than answered by a 4xx or a body that is not what the route gives.
    private func noteUnanswered(_ error: any Error, route: String) -> Bool {
        if let answer = error as? BackendAnswerError, let status = answer.status, status < 500 { return false }
        if error is JSONValue.ParseError { return false }
        logger.notice("the owner's server did not answer \(route)", metadata: ["node.backend.url": "\(settings.baseURL)", "error": "\(error)"])
        return true
    }

    private func apply(_ verdict: BackendCheck.Verdict, to engine: EngineHandle) {
        let before = engine.snapshot
        // What the server said goes into the report: bounded, so a server listing long names cannot make the gateway
        // refuse the node's report (`NodeReport.Bound.detail`).
        let verdict: BackendCheck.Verdict =
            switch verdict {
            case .verified(let text): .verified(String(text.prefix(1024)))
            case .unverified(let text): .unverified(String(text.prefix(1024)))
            case .refused(let text): .refused(String(text.prefix(1024)))
            }
        var after = before
        switch verdict {
        case .verified(let evidence), .unverified(let evidence):
            after.state = .ready
            after.detail = nil
            after.backend = ExternalBackend(kind: "openai", verified: { if case .verified = verdict { true } else { false } }(), evidence: evidence)
        case .refused(let reason):
            after.state = .failed
            after.detail = reason
            after.backend = ExternalBackend(kind: "openai", verified: false, evidence: reason)
        }
        guard after != before else { return }
        engine.update { $0 = after }
        logger.log(
            level: after.state == .ready ? .info : .warning,
            "owner's server model \(after.state == .ready ? "ready" : "not served")",
            metadata: [
                "node.model": "\(engine.spec.id)", "node.backend.verified": "\(after.backend?.verified ?? false)",
                "node.backend.evidence": "\(after.backend?.evidence ?? "")",
            ]
        )
    }

    /// One short JSON exchange with the server, with its key: GET, or POST when there is a body.
    private func exchange(_ url: String, body: JSONValue? = nil) async throws -> JSONValue {
        var request = HTTPClientRequest(url: url)
        if let body {
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(try JSONEncoder().encode(body))
        }
        request.headers.add(name: "connection", value: "close")
        if let key = settings.apiKey { request.headers.add(name: "authorization", value: "Bearer " + key) }
        request.tlsConfiguration = settings.trust?.configuration
        let response = try await EngineClient.shared.execute(request, deadline: .now() + TimeAmount(lookTimeout))
        let bytes = try await response.body.collect(upTo: 4 << 20)
        guard response.status == .ok else {
            throw BackendAnswerError("\(url) answered \(response.status.code)", status: Int(response.status.code))
        }
        return try JSONValue.parse(bytes.readableBytesView)
    }
}

extension BackendMonitorService {
    /// Whether a look failed because nothing listens at the server's address (it stopped, or is not started yet).
    static func refusesConnections(_ error: any Error) -> Bool {
        if let error = error as? NIOConnectionError { return error.connectionErrors.contains { refusesConnections($0.error) } }
        if let error = error as? IOError { return error.errnoCode == ECONNREFUSED }
        return false
    }

    /// Whether `error` is this node refusing the server's certificate (an authority it does not trust, or a name the
    /// certificate does not cover): the report then says so, rather than that the server does not answer.
    static func distrustsCertificate(_ error: any Error) -> Bool {
        if error is NIOSSLExtraError { return true }
        guard case .handshakeFailed(let reason)? = error as? NIOSSLError else { return false }
        return "\(reason)".contains("CERTIFICATE_VERIFY_FAILED")
    }
}

struct BackendAnswerError: Error, CustomStringConvertible {
    let description: String
    /// The server's HTTP status, when it answered with one.
    var status: Int?
    init(_ description: String, status: Int? = nil) {
        self.description = description
        self.status = status
    }

    /// 401 or 403: the server wants a key, or another one.
    var refusesTheKey: Bool { status == 401 || status == 403 }
}
