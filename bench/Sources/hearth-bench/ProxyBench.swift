import AsyncHTTPClient
import Foundation
import HearthCore
import HearthTesting
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// Part `proxies`: Hearth beside nginx and LiteLLM, each in front of the same paced mock upstream (`MockUpstream`),
/// the mock also reached directly; every figure a ratio to nginx's or to direct, measured in the same run.
enum ProxyBench {
    struct Settings {
        /// Sequential whole requests per target, for the added latency.
        var sequential = 200
        /// Paced streams: clients at once, requests each, tokens each, milliseconds between events.
        var pacedClients = 8
        var pacedRequests = 16
        var pacedTokens = 128
        var paceMilliseconds = 5
        /// Whole requests at the ceiling, for CPU per request: clients and seconds.
        var requestClients = 16
        var requestSeconds = 8.0
        /// Streams held open at once at 20 tokens/s, for how long.
        var streams = 1000
        var streamSeconds = 10.0
        /// Larger counts of held streams tried after `streams`, in order, until a proxy no longer keeps them at
        /// 20 tokens/s without an error: where it breaks.
        var streamRamp: [Int] = []
        /// The most streams any held load opens.
        var mostStreams: Int { max(streams, streamRamp.max() ?? 0) }
        /// Whether LiteLLM is measured when its venv is there.
        var litellm = true
    }

    /// One load's outcome against one target.
    struct Load {
        var cpu = 0.0
        var requests = 0
        var errors = 0
        var tokens = 0
        var elapsed = 0.0
        var latencies: [Double] = []
        var peakRSS = 0.0
        /// The peak resident memory of each process, for targets of several (Hearth's gateway and node).
        var peakRSSByProcess: [Int32: Double] = [:]
        /// Held streams whose tokens all came at the pace asked (`heldStreams`).
        var keptPace = 0
        var firstError: String?
        /// CPU seconds by process, for targets of several (Hearth's gateway and node).
        var cpuByProcess: [Int32: Double] = [:]

        /// Whether `count` held streams all ended whole and at their pace.
        func holds(_ count: Int) -> Bool { errors == 0 && keptPace == count }

        /// Counts one request's outcome: a request, or an error with the first one's text; its value when it succeeded.
        mutating func count<T>(_ outcome: Result<T, any Error>) -> T? {
            switch outcome {
            case .success(let value):
                requests += 1
                return value
            case .failure(let error):
                errors += 1
                firstError = firstError ?? "\(error)"
                return nil
            }
        }
    }

    /// CPU seconds of each of `target`'s processes so far.
    static func cpuByProcess(_ target: ProxyTarget) -> [Int32: Double] {
        Dictionary(uniqueKeysWithValues: target.processes().map { ($0, cpuSeconds(of: $0)) })
    }

    /// What each process spent since `before`.
    static func spent(_ target: ProxyTarget, since before: [Int32: Double]) -> [Int32: Double] {
        cpuByProcess(target).reduce(into: [:]) { $0[$1.key] = $1.value - (before[$1.key] ?? 0) }
    }

    /// `clients` concurrent clients against `target`, each returning what it did (`client` gets its index), merged,
    /// with the time they took and the CPU each of the target's processes spent meanwhile.
    static func measure(_ target: ProxyTarget, clients: Int, _ client: @escaping @Sendable (Int) async -> Load) async -> Load {
        let before = cpuByProcess(target)
        let start = ContinuousClock.now
        var load = await withTaskGroup(of: Load.self) { group in
            for index in 0..<clients { group.addTask { await client(index) } }
            return await group.reduce(into: Load()) { merge(&$0, $1) }
        }
        load.elapsed = seconds(since: start)
        load.cpuByProcess = spent(target, since: before)
        load.cpu = load.cpuByProcess.values.reduce(0, +)
        return load
    }

    static func run(settings: Settings, http: HTTPClient, engine: ProxyEngineBench.Outcome?) async throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("bench-proxies")
        let mockProcess = try await TestProcess(name: "mock", executable: HearthBench.selfPath, arguments: ["mock-upstream"], directory: directory)

        let mock = String(try await mockProcess.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))

        var targets = [ProxyTargets.direct(mock)]
        try FileManager.default.createDirectory(atPath: directory + "/nginx", withIntermediateDirectories: true)
        guard let nginx = try await ProxyTargets.nginx(in: directory + "/nginx", upstream: mock, connections: settings.mostStreams + 256) else {
            throw BenchError("the proxies part needs nginx (apt-get install nginx): every goal is a ratio to it")
        }
        targets.append(nginx)
        try FileManager.default.createDirectory(atPath: directory + "/litellm", withIntermediateDirectories: true)
        let litellm = settings.litellm ? try await ProxyTargets.litellm(in: directory + "/litellm", upstream: mock) : nil
        if let litellm { targets.append(litellm) }
        let hearth = try await ProxyTargets.hearth(in: directory, upstream: mock, slots: max(64, settings.mostStreams))
        // Idle is a process that has had no request for a while: Hearth then gives back the code pages it is not using
        // (`IdleCodeRelease`, after 30 s; polled, bounded). The link's polls (every 5 s) map some of them again, so the
        // figure is read 30 s after that, when it has settled; the one just after start and the one just after the
        // release are reported beside it.
        let started = (gateway: residentBytes(of: hearth.gateway), node: residentBytes(of: hearth.node))
        let quietUntil = ContinuousClock.now + .seconds(60)
        func given(_ pid: Int32, from start: Double) -> Bool { residentBytes(of: pid) < start - 4 * 1_048_576 }
        while ContinuousClock.now < quietUntil, !given(hearth.gateway, from: started.gateway) || !given(hearth.node, from: started.node) {
            try await Task.sleep(for: .milliseconds(500))
        }
        let released = (gateway: residentBytes(of: hearth.gateway), node: residentBytes(of: hearth.node))
        try await Task.sleep(for: .seconds(30))
        let gatewayIdleRSS = residentBytes(of: hearth.gateway)
        let nodeIdleRSS = residentBytes(of: hearth.node)
        let idlePrivate = (gateway: privateResidentBytes(of: hearth.gateway), node: privateResidentBytes(of: hearth.node))
        targets.append(hearth.target)

        // Warm every path, then the loads.
        for target in targets { for _ in 0..<20 { _ = try await whole(http, target, tokens: 16) } }
        var latencies: [String: [Double]] = [:]
        // Each round begins with the next target, so each follows every other as often: what a proxy still does after
        // its answer (LiteLLM's logging, Hearth's settlement) lands on every target's requests alike, not always on the
        // one after it in the list.
        for round in 0..<settings.sequential {
            for index in targets.indices {
                let target = targets[(round + index) % targets.count]
                latencies[target.name, default: []].append(try await whole(http, target, tokens: 16))
            }
        }
        var paced: [String: Load] = [:]
        var perRequest: [String: Load] = [:]
        for target in targets {
            paced[target.name] = await pacedStreams(http, target, settings: settings)
            perRequest[target.name] = await wholeAtCeiling(http, target, settings: settings)
        }
        var held: [String: Load] = [:]
        // What a stream adds is counted from just before they open: the loads above leave the processes larger than
        // idle (SQLite's cache, the allocator's free lists), which no open stream holds.
        var beforeHeld = (gateway: 0.0, node: 0.0)
        for target in [nginx, hearth.target] {
            if target.name == hearth.target.name { beforeHeld = (residentBytes(of: hearth.gateway), residentBytes(of: hearth.node)) }
            held[target.name] = await heldStreams(http, target, count: settings.streams, seconds: settings.streamSeconds)
        }
        // Then more at once, count by count, each proxy until it fails to hold them: where it breaks.
        var ramp: [String: [(count: Int, load: Load)]] = [:]
        for target in [nginx, hearth.target] {
            guard let first = held[target.name], first.holds(settings.streams) else { continue }
            for count in settings.streamRamp {
                let load = await heldStreams(http, target, count: count, seconds: settings.streamSeconds)
                ramp[target.name, default: []].append((count, load))
                if !load.holds(count) { break }
            }
        }

        // Stopped here, not left to the process's exit: nginx's workers outlive a master that is killed.
        for target in targets { await target.stop() }
        _ = await mockProcess.stop()
        return report(
            settings: settings,
            targets: targets,
            latencies: latencies,
            paced: paced,
            perRequest: perRequest,
            held: held,
            ramp: ramp,
            hearth: (hearth.gateway, hearth.node),
            started: started,
            released: released,
            idle: (gatewayIdleRSS, nodeIdleRSS),
            beforeHeld: beforeHeld,
            idlePrivate: idlePrivate,
            litellmMissing: litellm == nil,
            engine: engine
        )
    }

    // MARK: Loads

    static func body(_ target: ProxyTarget, tokens: Int, pace: Int, stream: Bool) -> ByteBuffer {
        var body: JSONValue = [
            "model": .string(target.model), "messages": [["role": "user", "content": "go"]], "max_tokens": .integer(Int64(tokens)),
            "seed": .integer(Int64(pace)),
        ]
        if stream {
            body["stream"] = true
            body["stream_options"] = ["include_usage": true]
        }
        return ByteBuffer(bytes: (try? JSONEncoder().encode(body)) ?? Data())
    }

    static func request(_ target: ProxyTarget, _ body: ByteBuffer) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: target.chat)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        for (name, value) in target.headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(body)
        return request
    }

    /// One whole answer; its latency in seconds.
    static func whole(_ http: HTTPClient, _ target: ProxyTarget, tokens: Int) async throws -> Double {
        let start = ContinuousClock.now
        let response = try await http.execute(request(target, body(target, tokens: tokens, pace: 0, stream: false)), timeout: .seconds(60))
        let answer = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else { throw BenchError("\(target.name): HTTP \(response.status.code) \(String(buffer: answer).prefix(200))") }
        return seconds(since: start)
    }

    /// One stream read to its end; the content events it carried.
    static func stream(_ http: HTTPClient, _ target: ProxyTarget, tokens: Int, pace: Int) async throws -> Int {
        let response = try await http.execute(request(target, body(target, tokens: tokens, pace: pace, stream: true)), timeout: .seconds(600))
        guard response.status == .ok else { throw BenchError("\(target.name): HTTP \(response.status.code)") }
        var count = 0
        var tail: [UInt8] = []
        for try await chunk in response.body {
            // Count the token's text, `" tok"`, across chunk borders (proxies re-encode events with their own spacing).
            let bytes = tail + Array(chunk.readableBytesView)
            count += occurrences(of: Array(#"" tok""#.utf8), in: bytes)
            tail = Array(bytes.suffix(5))
            if tail.count == bytes.count { tail = [] }
        }
        return count
    }

    static func occurrences(of needle: [UInt8], in bytes: [UInt8]) -> Int {
        guard bytes.count >= needle.count else { return 0 }
        var count = 0
        var index = 0
        while index + needle.count <= bytes.count {
            if bytes[index] == needle[0], Array(bytes[index..<(index + needle.count)]) == needle {
                count += 1
                index += needle.count
            } else {
                index += 1
            }
        }
        return count
    }

    /// `pacedClients` clients, each `pacedRequests` streams of `pacedTokens` tokens one `paceMilliseconds` apart.
    static func pacedStreams(_ http: HTTPClient, _ target: ProxyTarget, settings: Settings) async -> Load {
        await measure(target, clients: settings.pacedClients) { _ in
            var mine = Load()
            for _ in 0..<settings.pacedRequests {
                let outcome = await attempt { try await stream(http, target, tokens: settings.pacedTokens, pace: settings.paceMilliseconds) }
                mine.tokens += mine.count(outcome) ?? 0
            }
            return mine
        }
    }

    /// Whole answers as fast as `requestClients` clients can ask, for `requestSeconds`.
    static func wholeAtCeiling(_ http: HTTPClient, _ target: ProxyTarget, settings: Settings) async -> Load {
        let start = ContinuousClock.now
        return await measure(target, clients: settings.requestClients) { _ in
            await wholeAnswers(http, target, from: start, for: settings.requestSeconds)
        }
    }

    /// One client asking `target` for whole 16-token answers, one after another, until `duration` seconds after `start`.
    static func wholeAnswers(_ http: HTTPClient, _ target: ProxyTarget, from start: ContinuousClock.Instant, for duration: Double) async -> Load {
        var mine = Load()
        while seconds(since: start) < duration {
            if let latency = mine.count(await attempt { try await whole(http, target, tokens: 16) }) { mine.latencies.append(latency) }
        }
        return mine
    }

    /// `count` streams at 20 tokens/s open together for `seconds` (started over the first second); errors, how many
    /// kept that pace (`keptPace`: the last token within a quarter more than the time asked, plus a second for the
    /// first), the peak memory of the proxy's processes, together and each.
    static func heldStreams(_ http: HTTPClient, _ target: ProxyTarget, count: Int, seconds duration: Double) async -> Load {
        let tokens = Int(duration * 20)
        let sampler = Task {
            var peak = 0.0
            var peaks: [Int32: Double] = [:]
            while !Task.isCancelled {
                var total = 0.0
                for process in target.processes() {
                    let resident = residentBytes(of: process)
                    peaks[process] = max(peaks[process] ?? 0, resident)
                    total += resident
                }
                peak = max(peak, total)
                try? await Task.sleep(for: .milliseconds(250))
            }
            return (peak, peaks)
        }
        var load = await measure(target, clients: count) { index in
            try? await Task.sleep(for: .milliseconds(1000 * index / max(1, count)))
            var mine = Load()
            let started = ContinuousClock.now
            let outcome = await attempt {
                let received = try await stream(http, target, tokens: tokens, pace: 50)
                // A stream cut short is an error too.
                guard received == tokens else { throw BenchError("a stream ended after \(received) of \(tokens) tokens") }
                return received
            }
            mine.tokens = mine.count(outcome) ?? 0
            let took = ContinuousClock.now - started
            if mine.tokens == tokens, took <= .seconds(duration * 1.25 + 1) { mine.keptPace = 1 }
            return mine
        }
        sampler.cancel()
        (load.peakRSS, load.peakRSSByProcess) = await sampler.value
        return load
    }

    /// What `work` returned or threw.
    static func attempt<T>(_ work: () async throws -> T) async -> Result<T, any Error> {
        do {
            return .success(try await work())
        } catch {
            return .failure(error)
        }
    }

    static func merge(_ into: inout Load, _ other: Load) {
        into.requests += other.requests
        into.errors += other.errors
        into.tokens += other.tokens
        into.keptPace += other.keptPace
        into.latencies += other.latencies
        into.firstError = into.firstError ?? other.firstError
    }
}
