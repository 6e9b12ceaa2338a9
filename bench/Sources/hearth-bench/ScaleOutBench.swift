import AsyncHTTPClient
import Foundation
import HearthCore
import HearthTesting

/// The storage part's end-to-end half: whole answers through real gateway processes, on SQLite, on PostgreSQL, and
/// split over two gateways of one network on PostgreSQL, each gateway's nodes fronting the `proxies` part's mock
/// upstream (so the engine costs nothing and what is measured is gateways, nodes and the database).
enum ScaleOutBench {
    struct Settings {
        var clients = 16
        var seconds = 10.0
        /// Nodes in every setup, spread evenly over its gateways.
        var nodes = 2
    }

    /// One setup: how many gateways, on which database.
    struct Setup {
        var name: String
        var gateways: Int
        var postgres: Bool
    }

    struct Figures {
        var setup: Setup
        var requests = 0
        var errors = 0
        var elapsed = 0.0
        var latencies: [Double] = []
        var gatewayCPU = 0.0
        var nodeCPU = 0.0
        var databaseCPU = 0.0
        var firstError: String?

        var rate: Double { Double(requests) / max(elapsed, 1e-9) }
        /// Microseconds of CPU per request.
        func perRequest(_ seconds: Double) -> Double { seconds / Double(max(requests, 1)) * 1e6 }
        var totalCPU: Double { gatewayCPU + nodeCPU + databaseCPU }
    }

    static let setups = [
        Setup(name: "SQLite, 1 gateway", gateways: 1, postgres: false),
        Setup(name: "PostgreSQL, 1 gateway", gateways: 1, postgres: true),
        Setup(name: "PostgreSQL, 2 gateways", gateways: 2, postgres: true),
    ]

    static func run(settings: Settings, http: HTTPClient) async throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("bench-scaleout")
        let mockProcess = try await TestProcess(name: "mock", executable: HearthBench.selfPath, arguments: ["mock-upstream"], directory: directory)
        defer { Task { _ = await mockProcess.stop() } }
        let mock = String(try await mockProcess.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        var rows: [Figures] = []
        for (index, setup) in setups.enumerated() {
            FileHandle.standardError.write(Data("scale-out: \(setup.name): \(settings.clients) clients for \(Int(settings.seconds)) s\n".utf8))
            rows.append(try await measure(setup, settings: settings, in: directory + "/\(index)", mock: mock, http: http))
        }
        return report(rows, settings: settings)
    }

    static func measure(_ setup: Setup, settings: Settings, in directory: String, mock: String, http: HTTPClient) async throws -> Figures {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var shared: [String] = []
        if setup.postgres {
            shared += ["--database", try await PostgresServer.shared.database("benchscaleout")]
        }
        if setup.gateways > 1 {
            let key = directory + "/network.key"
            let made = try await TestProcess.hearth(["gateway", "network-key", "--out", key], in: directory)
            guard made.status == 0 else { throw BenchError("hearth gateway network-key: \(made.errors)") }
            shared += ["--network-key", key]
        }
        var processes: [TestProcess] = []
        defer {
            let all = processes
            Task { for process in all.reversed() { _ = await process.stop() } }
        }
        var gateways: [(url: String, pid: Int32)] = []
        var nodePIDs: [Int32] = []
        for index in 0..<setup.gateways {
            let gateway = try await ProxyTargets.hearthGateway(in: directory, name: "gateway-\(index)", arguments: shared)
            processes.append(gateway.process)
            gateways.append((gateway.url, gateway.process.pid))
            let mine = settings.nodes / setup.gateways + (index < settings.nodes % setup.gateways ? 1 : 0)
            for number in 0..<mine {
                let node = try await ProxyTargets.backendNode(
                    in: directory,
                    name: "node-\(index)-\(number)",
                    join: gateway.join,
                    upstream: mock,
                    slots: 64
                )
                processes.append(node)
                nodePIDs.append(node.pid)
            }
            try await waitForNodes(mine, at: gateway.url)
        }
        // One target per gateway; a client keeps to one gateway, as behind a balancer that hashes its address, and the
        // clients are spread evenly.
        let targets = gateways.map { gateway in
            ProxyTarget(name: "Hearth", url: gateway.url, model: DefaultModel.id.rawValue, processes: { [] }, version: "", stop: {})
        }
        for target in targets { for _ in 0..<50 { _ = try await ProxyBench.whole(http, target, tokens: 16) } }

        // Every process of the setup, PostgreSQL's backends included (each gateway connection gets one), is measured.
        let gatewayPIDs = Set(gateways.map(\.pid))
        let nodes = Set(nodePIDs)
        let measured = ProxyTarget(
            name: setup.name,
            url: gateways[0].url,
            model: DefaultModel.id.rawValue,
            processes: { Array(gatewayPIDs) + Array(nodes) + (setup.postgres ? postgresPIDs() : []) },
            version: "",
            stop: {}
        )
        let start = ContinuousClock.now
        let load = await ProxyBench.measure(measured, clients: settings.clients) { index in
            await ProxyBench.wholeAnswers(http, targets[index % targets.count], from: start, for: settings.seconds)
        }
        func spent(_ pids: Set<Int32>) -> Double { load.cpuByProcess.filter { pids.contains($0.key) }.values.reduce(0, +) }
        var figures = Figures(setup: setup, requests: load.requests, errors: load.errors, elapsed: load.elapsed)
        figures.latencies = load.latencies
        figures.firstError = load.firstError
        figures.gatewayCPU = spent(gatewayPIDs)
        figures.nodeCPU = spent(nodes)
        figures.databaseCPU = load.cpu - figures.gatewayCPU - figures.nodeCPU
        return figures
    }

    /// Waits until the gateway at `url` has `count` nodes serving the default model.
    static func waitForNodes(_ count: Int, at url: String) async throws {
        _ = try await eventually("\(count) nodes at \(url)", within: .seconds(60), every: .milliseconds(100)) { () -> Bool? in
            let models = try await HTTP.get(url + "/v1/models").json["data"]?.arrayValue ?? []
            let nodes = models.first { $0["id"]?.stringValue == DefaultModel.id.rawValue }?["hearth"]?["nodes"]?.integerValue ?? 0
            return nodes >= count ? true : nil
        }
    }

    static func report(_ rows: [Figures], settings: Settings) -> String {
        var text = """

            ### Through real gateway processes: \(settings.clients) clients for \(Int(settings.seconds)) s, whole answers of 16 tokens

            Each setup is real `hearth gateway` processes with \(settings.nodes) `hearth node --backend` processes in all (spread
            evenly over the gateways, each gateway serving its own nodes) in front of the `proxies` part's mock upstream, so no
            engine takes CPU. Clients are spread evenly over the gateways and keep to one, as behind a load balancer; each
            request is anonymous, metered, quota-checked, receipted and credited in the ledger. **Everything runs on this
            machine's 2 cores**: two gateways share the cores one had, so "2 gateways" shows what splitting costs and
            whether the shared database holds, not added capacity; on two machines each gateway would have its own.
            The database's CPU is every `postgres` process's (its server runs with `fsync=off`, as the tests' does); on
            SQLite it is inside the gateway's figure.

            | setup | requests/s | × SQLite | p50 | p99 | errors | CPU per request: gateways | nodes | database | database's share |
            |---|---|---|---|---|---|---|---|---|---|

            """
        let reference = rows.first?.rate ?? 1
        for row in rows {
            let share = row.setup.postgres ? "\(Int((row.databaseCPU / max(row.totalCPU, 1e-9) * 100).rounded())) %" : "in the gateway"
            text +=
                "| \(row.setup.name) | \(Int(row.rate)) | \(format(row.rate / max(reference, 1e-9))) | "
                + "\(format(percentile(row.latencies, 50) * 1000)) ms | \(format(percentile(row.latencies, 99) * 1000)) ms | \(row.errors) | "
                + "\(Int(row.perRequest(row.gatewayCPU))) µs | \(Int(row.perRequest(row.nodeCPU))) µs | "
                + (row.setup.postgres ? "\(Int(row.perRequest(row.databaseCPU))) µs" : "–") + " | \(share) |\n"
        }
        if let failed = rows.first(where: { $0.firstError != nil }), let error = failed.firstError {
            text += "\nFirst error (\(failed.setup.name)): `\(error.prefix(300))`\n"
        }
        if rows.count == 3 {
            text +=
                "\n2 gateways / 1 on PostgreSQL: \(format(rows[2].rate / max(rows[1].rate, 1e-9)))× the requests per second, "
                + "\(format(percentile(rows[2].latencies, 99) / max(percentile(rows[1].latencies, 99), 1e-9)))× the p99.\n"
        }
        return text
    }
}
