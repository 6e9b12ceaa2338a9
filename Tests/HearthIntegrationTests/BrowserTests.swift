import Foundation
import HearthTesting
import Testing

@testable import HearthCore
@testable import HearthGateway

extension OneAtATime {
    /// The web pages in a real headless Chromium, against a real gateway and a node with its engine: chat (streaming,
    /// stop, refusal, hostile output), the network page and its in-browser ledger check, the account page with a browser
    /// key and with a pasted token (revoking a device), the node dashboard's pause. The steps are in `Clients/browser_pages.py` (Selenium); screenshots of every page
    /// land in the test's folder.
    @Suite(.serialized, .timeLimit(.minutes(10)))
    struct BrowserTests {
        @Test func peopleUseThePagesInABrowser() async throws {
            let python = try await PythonClients.interpreter()
            let driver = "/usr/bin/chromedriver"
            try #require(
                FileManager.default.isExecutableFile(atPath: driver) && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"),
                "needs Debian's chromium and chromium-driver (.ci/run installs them)"
            )
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/browser_pages.py").path
            // A small anonymous quota, so the last step can show the refusal.
            try await Cluster.with(label: "browser", gatewayArguments: ["--anonymous-tokens-per-hour", "500"]) { cluster in
                let node = try await cluster.startNode("node-a", extraArguments: ["--dashboard-port", "0"])
                // A second node in front of its owner's server (a named fake with no way to check its file): the
                // network page must say it is unverified and not routed to.
                let ownServer = try await FakeOpenAIServer.start(
                    .init(models: ["mine"], answer: ["choices": []], stream: "data: [DONE]\n\n")
                )
                defer { Task { await ownServer.stop() } }
                // It is also a device of an account (certified with `hearth keys certify-device`), which the
                // account page lists and revokes; the browser logs in to it with a token from `hearth login`.
                let accountFile = cluster.directory + "/account.key"
                let deviceDirectory = cluster.directory + "/own-server"
                for file in [accountFile, deviceDirectory + "/node.key"] {
                    #expect(try await TestProcess.hearth(["keys", "new", "--file", file], in: cluster.directory).status == 0)
                }
                let certified = try await TestProcess.hearth(
                    ["keys", "certify-device", "--account", accountFile, "--node-dir", deviceDirectory, "--name", "own-server", "--days", "1"],
                    in: cluster.directory
                )
                #expect(certified.status == 0, "\(certified.errors)")
                let login = try await TestProcess.hearth(["login", "--url", cluster.url, "--key", accountFile], in: cluster.directory)
                let token = try #require(login.output.first { $0.hasPrefix("token=") }?.dropFirst("token=".count), "\(login.errors)")
                _ = try await cluster.startNode(
                    "own-server",
                    serving: ["--backend", "openai:" + ownServer.baseURL, "--backend-model", "mine=\(DefaultModel.id.rawValue)"]
                )
                let dashboard = try await node.waitForLine { $0.hasPrefix("DASHBOARD url=") }.dropFirst("DASHBOARD url=".count)
                try await cluster.waitForReadyNodes(1)
                let engine = try #require(childProcesses(of: node.pid, named: "llama-server").first)
                let enginePort = try #require(commandLineValue(of: engine, flag: "--port"))
                let shots = cluster.directory + "/screenshots"
                try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
                let run = try await TestProcess(
                    name: "browser",
                    executable: python,
                    arguments: [script, cluster.url, String(dashboard), enginePort, shots, String(token)],
                    directory: cluster.directory
                )
                let status = await run.waitForExit(timeout: .seconds(480))
                try #require(status == 0, "the browser steps failed:\n\(run.output.joined(separator: "\n"))\n\(run.errorOutput.suffix(6000))")
                #expect(run.output.last == "OK")
                for page in ["chat", "chat-refusal", "network", "account", "node"] {
                    #expect(FileManager.default.fileExists(atPath: "\(shots)/\(page).png"), "no screenshot of \(page)")
                }

                // Stop really stopped the request: the gateway recorded its client leaving before the end.
                let stopped = try #require(run.output.first { $0.hasPrefix("STOPPED request=") }?.dropFirst("STOPPED request=".count))
                let database = try GatewayDatabase.open(directory: cluster.directory + "/gateway")
                let usage = try await database.recentUsage(limit: 200)
                let record = try #require(usage.first { $0.requestID == String(stopped) }, "no usage record for the stopped request")
                #expect(record.status == "client_closed", "the stopped request was recorded as \(record.status)")
                #expect(record.completionTokens < 1500)
            }
        }

        /// The chat page with a model only a pool can serve: two `hearth node --pool-only` processes lending 200 MiB
        /// each (neither holds SmolLM2 at 8 Ki tokens alone). The picker offers it as pooled, the first question meets
        /// the warming refusal in words, and asked again the pool answers.
        @Test func aPooledModelIsOfferedWarmsAndAnswersInTheBrowser() async throws {
            let python = try await PythonClients.interpreter()
            try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver"), "needs Debian's chromium-driver")
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/browser_pages.py").path
            try await Cluster.with(label: "browser-pool", gatewayArguments: ["--auto-pools", "on", "--pool-context", "8192"]) { cluster in
                var nodes: [TestProcess] = []
                for name in ["pool-a", "pool-b"] {
                    nodes.append(
                        try await TestProcess(
                            name: name,
                            executable: try TestEnvironment.hearthBinary(),
                            arguments: try cluster.poolNodeArguments(name: name, lentMiB: 200),
                            directory: cluster.directory
                        )
                    )
                }
                let lenders = nodes
                defer { Task { for node in lenders { await node.stop() } } }
                try await cluster.waitForLenders(2)
                let shots = cluster.directory + "/screenshots"
                try FileManager.default.createDirectory(atPath: shots, withIntermediateDirectories: true)
                let run = try await TestProcess(
                    name: "browser-pool",
                    executable: python,
                    arguments: [script, "pool", cluster.url, shots],
                    directory: cluster.directory
                )
                let status = await run.waitForExit(timeout: .seconds(420))
                try #require(status == 0, "the browser steps failed:\n\(run.output.joined(separator: "\n"))\n\(run.errorOutput.suffix(6000))")
                #expect(run.output.last == "OK")
                for page in ["chat-pool-warming", "chat-pooled"] {
                    #expect(FileManager.default.fileExists(atPath: "\(shots)/\(page).png"), "no screenshot of \(page)")
                }
                // The answer came from the pool: its request is metered and its receipt shares the credit among members.
                let served = try #require(run.output.first { $0.hasPrefix("POOLED request=") }?.dropFirst("POOLED request=".count))
                let pools = try await HTTP.get(cluster.url + "/api/pools").json
                #expect(pools["pools"]?[0]?["state"]?.stringValue == "ready", "\(pools)")
                let database = try GatewayDatabase.open(directory: cluster.directory + "/gateway")
                let usage = try await eventually("the pooled answer's usage row") {
                    try await database.recentUsage(limit: 200).first { $0.requestID == String(served) }
                }
                #expect(usage.status == "ok")
            }
        }
    }
}
