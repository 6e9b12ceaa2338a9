import AsyncHTTPClient
import Foundation
import HearthCore
import HearthTesting
import NIOCore
import NIOHTTP1
import Synchronization

/// The soak: `hearth up` under a mixed load for a long time (an hour by default), sampled at intervals. RSS, open
/// descriptors, SQLite size and latency must be flat once warmed up; a leak shows as a slope.
///
/// The load loops over five kinds of request from several clients at once: a streamed chat, a chat answered whole,
/// an Ollama stream, a refused request (bad JSON, an unknown model, a refused path, in turn) and a stream the client
/// hangs up on after its first token.
enum SoakBench {
    enum Kind: String, CaseIterable, Sendable {
        case streamed, whole, ollama, refused
        case hangUp = "hang-up"
    }

    struct Sample: Sendable {
        var minute: Double
        var rssMiB: Double
        var descriptors: Int
        var sqliteMiB: Double
        var requests: Int
        var errors: Int
        var p50: Double
        var p99: Double
    }

    /// Latencies (seconds) and errors since the last sample.
    final class Tally: Sendable {
        private let state = Mutex<(latencies: [Double], errors: Int, byKind: [String: Int])>(([], 0, [:]))
        func record(_ kind: Kind, latency: Double?) {
            state.withLock { state in
                if let latency { state.latencies.append(latency) } else { state.errors += 1 }
                state.byKind[kind.rawValue, default: 0] += 1
            }
        }
        func take() -> (latencies: [Double], errors: Int) {
            state.withLock { state in
                defer {
                    state.latencies = []
                    state.errors = 0
                }
                return (state.latencies, state.errors)
            }
        }
        var byKind: [String: Int] { state.withLock { $0.byKind } }
    }

    static func run(minutes: Double, sampleSeconds: Double, clients: Int, output: String, http: HTTPClient) async throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("soak")
        let up = try await TestProcess(
            name: "up",
            executable: try TestEnvironment.hearthBinary(),
            arguments: [
                "up", "--port", "0", "--data-dir", directory + "/state", "--rate-limit", "100000000", "--anonymous-tokens-per-hour",
                "1000000000000", "--max-tokens-per-hour", "1000000000000", "--parallel", "4", "--log-level", "warning",
            ],
            directory: directory
        )
        let url = String(try await up.waitForLine(timeout: .seconds(600)) { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        _ = try await up.waitForLine(timeout: .seconds(600)) { $0.hasPrefix("Hearth is up") }
        let tally = Tally()
        let end = ContinuousClock.now + .milliseconds(Int64(minutes * 60_000))
        let started = ContinuousClock.now
        var samples: [Sample] = []
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<clients {
                group.addTask {
                    var turn = client
                    while ContinuousClock.now < end {
                        let kind = Kind.allCases[turn % Kind.allCases.count]
                        turn += 1
                        let began = ContinuousClock.now
                        let ok = await Self.send(kind, turn: turn, url: url, http: http)
                        tally.record(kind, latency: ok ? seconds(since: began) : nil)
                    }
                }
            }
            while ContinuousClock.now < end {
                try await Task.sleep(for: .milliseconds(Int64(sampleSeconds * 1000)))
                let (latencies, errors) = tally.take()
                samples.append(
                    Sample(
                        minute: seconds(since: started) / 60,
                        rssMiB: Double(residentKiB(of: up.pid)) / 1024,
                        descriptors: (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(up.pid)/fd").count) ?? -1,
                        sqliteMiB: Double(["", "-wal"].map { fileSize(directory + "/state/gateway/gateway.sqlite" + $0) }.reduce(0, +)) / 1_048_576,
                        requests: latencies.count,
                        errors: errors,
                        p50: percentile(latencies, 50) * 1000,
                        p99: percentile(latencies, 99) * 1000
                    )
                )
                print("soak: minute \(format(samples.last!.minute, 1)) rss \(format(samples.last!.rssMiB, 1)) MiB fds \(samples.last!.descriptors)")
            }
            try await group.waitForAll()
        }
        _ = await up.stop(grace: .seconds(60))
        try SoakPlot.svg(samples).write(toFile: (output as NSString).deletingPathExtension + ".svg", atomically: true, encoding: .utf8)
        return report(
            samples,
            byKind: tally.byKind,
            minutes: minutes,
            clients: clients,
            plot: ((output as NSString).deletingPathExtension as NSString).lastPathComponent + ".svg"
        )
    }

    /// Sends one request of `kind`; `true` when it went as that kind should (refusals must be refused).
    static func send(_ kind: Kind, turn: Int, url: String, http: HTTPClient) async -> Bool {
        let model = DefaultModel.id.rawValue
        let chat: JSONValue = ["model": .string(model), "messages": [["role": "user", "content": "Say something kind."]], "max_tokens": 24]
        do {
            switch kind {
            case .streamed:
                var body = chat
                body["stream"] = true
                return try await status(http, url + "/v1/chat/completions", body: body, readAll: true) == 200
            case .whole:
                return try await status(http, url + "/v1/chat/completions", body: chat, readAll: true) == 200
            case .ollama:
                let body: JSONValue = ["model": .string(model), "messages": [["role": "user", "content": "Hi"]], "options": ["num_predict": 16]]
                return try await status(http, url + "/api/chat", body: body, readAll: true) == 200
            case .refused:
                switch turn % 3 {
                case 0: return try await status(http, url + "/v1/chat/completions", raw: "{", readAll: true) == 400
                case 1:
                    let unknown: JSONValue = ["model": "no-such-model:q8_0", "messages": [["role": "user", "content": "x"]]]
                    return try await status(http, url + "/v1/chat/completions", body: unknown, readAll: true) == 404
                default: return try await status(http, url + "/v1/%2e%2e/api/keys", raw: "{}", readAll: true) == 400
                }
            case .hangUp:
                var body = chat
                body["stream"] = true
                body["max_tokens"] = 200
                body["ignore_eos"] = true
                return try await status(http, url + "/v1/chat/completions", body: body, readAll: false) == 200
            }
        } catch {
            return false
        }
    }

    /// Posts and returns the status; reads the whole body, or only its first chunk before dropping the connection.
    static func status(_ http: HTTPClient, _ url: String, body: JSONValue? = nil, raw: String? = nil, readAll: Bool) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        let bytes = try raw.map { ByteBuffer(string: $0) } ?? ByteBuffer(bytes: try JSONEncoder().encode(body ?? [:]))
        request.body = .bytes(bytes)
        let response = try await http.execute(request, timeout: .seconds(120))
        var iterator = response.body.makeAsyncIterator()
        if readAll {
            while try await iterator.next() != nil {}
        } else {
            _ = try await iterator.next()
        }
        return Int(response.status.code)
    }

    static func residentKiB(of pid: Int32) -> Int {
        Int(residentBytes(of: pid) / 1024)
    }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
    }

    /// The samples as a table, and how much each measure moved between the first and the last third of the run
    /// after warm-up (the first sample is the warm-up).
    static func report(_ samples: [Sample], byKind: [String: Int], minutes: Double, clients: Int, plot: String) -> String {
        var text = """
            ## Soak: `hearth up` under a mixed load for \(format(minutes, 0)) minutes

            \(clients) clients loop over a streamed chat, a whole chat, an Ollama stream, a refused request and a stream
            they hang up on after the first token (\(byKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))).
            Sampled every interval from /proc and the data folder. Plot: [\(plot)](\(plot)).

            | minute | RSS (MiB) | open fds | SQLite + WAL (MiB) | requests | errors | p50 (ms) | p99 (ms) |
            | --- | --- | --- | --- | --- | --- | --- | --- |

            """
        for sample in samples {
            text +=
                "| \(format(sample.minute, 1)) | \(format(sample.rssMiB, 1)) | \(sample.descriptors) | \(format(sample.sqliteMiB, 2)) | \(sample.requests) | \(sample.errors) | \(format(sample.p50, 0)) | \(format(sample.p99, 0)) |\n"
        }
        let settled = Array(samples.dropFirst())
        if settled.count >= 3 {
            let third = max(1, settled.count / 3)
            func drift(_ value: (Sample) -> Double) -> String {
                let early = settled.prefix(third).map(value).reduce(0, +) / Double(third)
                let late = settled.suffix(third).map(value).reduce(0, +) / Double(third)
                return early > 0 ? format((late - early) / early * 100, 1) + " %" : "n/a"
            }
            text += """

                Change from the first to the last third after warm-up: RSS \(drift(\.rssMiB)), open fds \(drift { Double($0.descriptors) }), \
                SQLite \(drift(\.sqliteMiB)) (it holds a row per request by design), p50 \(drift(\.p50)), p99 \(drift(\.p99)).

                """
        }
        return text
    }
}

/// A small SVG of the soak's samples: one panel per measure, drawn by hand (no plotting library here).
enum SoakPlot {
    static func svg(_ samples: [SoakBench.Sample]) -> String {
        let panels: [(String, (SoakBench.Sample) -> Double)] = [
            ("RSS (MiB)", \.rssMiB), ("open fds", { Double($0.descriptors) }), ("SQLite + WAL (MiB)", \.sqliteMiB), ("p99 latency (ms)", \.p99),
        ]
        let width = 420.0
        let height = 160.0
        var body = ""
        for (index, (title, value)) in panels.enumerated() {
            let x0 = Double(index % 2) * (width + 40) + 50
            let y0 = Double(index / 2) * (height + 60) + 30
            let values = samples.map(value)
            let top = max(values.max() ?? 1, 1) * 1.1
            let span = max(samples.last?.minute ?? 1, 1)
            let points = zip(samples, values).map { sample, v in
                "\(format(x0 + sample.minute / span * width, 1)),\(format(y0 + height - v / top * height, 1))"
            }.joined(separator: " ")
            body += """
                <text x="\(x0)" y="\(y0 - 8)" font-size="13">\(title)</text>
                <rect x="\(x0)" y="\(y0)" width="\(width)" height="\(height)" fill="none" stroke="#999"/>
                <text x="\(x0 - 4)" y="\(y0 + 10)" font-size="10" text-anchor="end">\(format(top, 0))</text>
                <text x="\(x0 - 4)" y="\(y0 + height)" font-size="10" text-anchor="end">0</text>
                <text x="\(x0 + width)" y="\(y0 + height + 14)" font-size="10" text-anchor="end">\(format(span, 0)) min</text>
                <polyline points="\(points)" fill="none" stroke="#c0392b" stroke-width="2"/>

                """
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(2 * width + 120))" height="\(Int(2 * height + 130))" font-family="sans-serif">
            \(body)</svg>

            """
    }
}
