import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore

/// Real pools: three `hearth node --pool-only` processes, each lending too little memory for SmolLM2 at 8 Ki tokens,
/// serve it together through llama.cpp's RPC backend, relayed by the gateway.
@Suite(.serialized, .timeLimit(.minutes(8)))
struct PoolTests {
    /// 150 MiB each: the planner finds that two cannot hold the model at 8 Ki tokens (about 330 MiB) and three can.
    static func poolNodeArguments(_ name: String, cluster: Cluster) throws -> [String] {
        try cluster.poolNodeArguments(name: name, lentMiB: 150)
    }

    static let question: JSONValue = [
        "model": .string(DefaultModel.id.rawValue),
        "messages": [["role": "user", "content": "Tell me about the sea."]],
        "max_tokens": 48, "temperature": 0, "seed": 1, "cache_prompt": false,
    ]

    /// Asks until the pool answers, checking that every refusal meanwhile is the warming 503 with Retry-After. After a
    /// loss (`recovering`), a request that reached the dying head in the instant before the gateway noticed may fail
    /// with a 502 that also says when to retry; nothing else is accepted.
    static func askUntilServed(
        _ cluster: Cluster,
        recovering: Bool = false,
        timeout: Duration = .seconds(240)
    ) async throws -> (reply: HTTP.Reply, warming: [String]) {
        let deadline = ContinuousClock.now + timeout
        var warming: [String] = []
        while ContinuousClock.now < deadline {
            let reply = try await HTTP.post(cluster.url + "/v1/chat/completions", json: question)
            if reply.status == 200 { return (reply, warming) }
            if recovering, reply.status == 502, reply.json["error"]?["code"]?.stringValue == "upstream_failed" {
                #expect(reply.headers.first(name: "retry-after") != nil)
                try await Task.sleep(for: .milliseconds(500))
                continue
            }
            #expect(reply.status == 503, "unexpected answer \(reply.status): \(reply.text)")
            #expect(reply.headers.first(name: "retry-after") != nil)
            #expect(reply.json["error"]?["code"]?.stringValue == "pool_warming", "\(reply.text)")
            warming.append(reply.json["error"]?["message"]?.stringValue ?? "")
            try await Task.sleep(for: .milliseconds(500))
        }
        let pools = try await HTTP.get(cluster.url + "/api/pools").text
        throw TestProcessError("the pool did not serve in time; pools: \(pools)\ngateway:\n\(cluster.gateway.errorOutput.suffix(4000))")
    }

    @Test func threeNodesServeAModelNoneCanHoldAloneWithTheSameTextAsOneUnsplitEngine() async throws {
        try await Cluster.with(label: "pool", gatewayArguments: ["--auto-pools", "on", "--pool-context", "8192"]) { cluster in
            var nodes: [TestProcess] = []
            for name in ["pool-a", "pool-b", "pool-c"] {
                let arguments = try Self.poolNodeArguments(name, cluster: cluster)
                nodes.append(
                    try await TestProcess(
                        name: name,
                        executable: try TestEnvironment.hearthBinary(),
                        arguments: arguments,
                        directory: cluster.directory
                    )
                )
            }
            for node in nodes { _ = try await node.waitForLine { $0.hasPrefix("READY node=") } }
            try await cluster.waitForLenders(3)
            // Until all three lend memory, the gateway cannot plan; after that the pool warms and then serves.
            let (reply, warming) = try await Self.askUntilServed(cluster)
            #expect(!warming.isEmpty, "the first request should have found the pool warming")
            #expect(warming.allSatisfy { $0.contains("warming") })
            let pooled = reply.json["choices"]?[0]?["message"]?["content"]?.stringValue ?? ""
            #expect(!pooled.isEmpty)

            let pools = try await HTTP.get(cluster.url + "/api/pools").json
            let pool = try #require(pools["pools"]?[0])
            #expect(pool["state"]?.stringValue == "ready")
            #expect(pool["members"]?.arrayValue?.count == 3)
            let layers = pool["members"]?.arrayValue?.compactMap { $0["layers"]?.integerValue }.reduce(0, +)
            #expect(layers == 30)
            // The output layer stays on the head: per token, each member sends back its hidden state (576 floats,
            // 2.3 KiB), not the last one the 49,152 logits (192 KiB) it would if it held the output.
            let before = UInt64(pool["relayedFromMembers"]?.integerValue ?? 0)
            let again = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(again.json["choices"]?[0]?["message"]?["content"]?.stringValue == pooled)
            let usage = again.json["usage"]
            let tokens = UInt64((usage?["prompt_tokens"]?.integerValue ?? 0) + (usage?["completion_tokens"]?.integerValue ?? 0))
            let after = UInt64(try await Self.pool(cluster)["relayedFromMembers"]?.integerValue ?? 0)
            try #require(tokens > 0 && after > before)
            #expect(after - before < tokens * 2 * 8_192, "\(after - before) bytes back from 2 members for \(tokens) tokens")
            // Every node runs its part: one head, two rpc-servers, each bound to loopback only.
            let rpcServers = nodes.flatMap { childProcesses(of: $0.pid, named: "ggml-rpc-server") }
            #expect(rpcServers.count == 2)
            for pid in rpcServers { #expect(listeningAddresses(of: pid).allSatisfy { $0.hasPrefix("127.0.0.1:") }) }

            // The same request on one unsplit engine with the head's settings gives the same text.
            // A port the kernel has just handed out: a random one can be taken (by then an ephemeral port of another
            // test's connection), and the engine that could not bind it was polled until the time limit.
            let port = try TestEnvironment.freePort()
            let reference = try await TestProcess(
                name: "reference",
                executable: try TestEnvironment.llamaServer(),
                arguments: [
                    "--model", try TestEnvironment.defaultModel(), "--host", "127.0.0.1", "--port", String(port), "--ctx-size", "8192",
                    "--parallel", "1", "--threads", "1", "--alias", DefaultModel.id.rawValue, "--no-webui",
                ],
                directory: cluster.directory
            )
            defer { Task { _ = await reference.stop() } }
            let deadline = ContinuousClock.now + .seconds(60)
            var healthy = false
            while !healthy, ContinuousClock.now < deadline, processIsAlive(reference.pid) {
                healthy = (try? await HTTP.get("http://127.0.0.1:\(port)/health"))?.status == 200
                if !healthy { try await Task.sleep(for: .milliseconds(200)) }
            }
            try #require(healthy, "the reference llama-server did not start: \(reference.errorOutput.suffix(500))")
            let alone = try await HTTP.post("http://127.0.0.1:\(port)/v1/chat/completions", json: Self.question)
            #expect(alone.json["choices"]?[0]?["message"]?["content"]?.stringValue == pooled)
            _ = await reference.stop()

            // The head's receipt names the pool and every node's layers; the ledger shares its tokens among them, and
            // both verifiers agree.
            try await Self.verifyPooledLedger(cluster, entries: 2)

            // `hearth pools` lists it; only an operator stops it, and an intentional stop is no incident.
            let listed = try await TestProcess.hearth(["pools", "--url", cluster.url], in: cluster.directory)
            #expect(listed.status == 0 && listed.output.first?.contains("ready") == true, "\(listed.output) \(listed.errors)")
            #expect(listed.output.filter { $0.contains("layers=") }.count == 3)
            let id = try #require(pool["id"]?.stringValue)
            let stranger = cluster.directory + "/stranger.key"
            _ = try await TestProcess.hearth(["keys", "new", "--file", stranger], in: cluster.directory)
            let refused = try await TestProcess.hearth(["pools", "stop", id, "--url", cluster.url, "--key", stranger], in: cluster.directory)
            #expect(refused.status != 0 && refused.errors.contains("operators"), "\(refused.errors)")
            let gatewayKey = cluster.directory + "/gateway/gateway.key"
            let stopped = try await TestProcess.hearth(["pools", "stop", id, "--url", cluster.url, "--key", gatewayKey], in: cluster.directory)
            #expect(stopped.status == 0 && stopped.output == ["stopping=\(id)"], "\(stopped.errors)")
            for pid in rpcServers { #expect(try await Self.waitUntilGone(pid), "an rpc-server outlived its stopped pool") }
            let stopDeadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < stopDeadline, !(try await HTTP.get(cluster.url + "/api/pools").json["pools"]?.arrayValue ?? []).isEmpty {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await HTTP.get(cluster.url + "/api/pools").json["pools"]?.arrayValue?.isEmpty == true)
            #expect(Self.incidents(cluster).isEmpty, "\(Self.incidents(cluster))")
            for node in nodes { _ = await node.stop() }
        }
    }

    /// Exports the ledger, checks it has `entries` pooled entries, and verifies it with Hearth and with Python.
    static func verifyPooledLedger(_ cluster: Cluster, entries: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let rows = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue ?? []
            if rows.count >= entries { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let export = cluster.directory + "/ledger.jsonl"
        let exported = try await TestProcess.hearth(["ledger", "export", "--url", cluster.url, "--out", export], in: cluster.directory)
        #expect(exported.status == 0, "\(exported.errors)")
        let verified = try await TestProcess.hearth(["ledger", "verify", export], in: cluster.directory)
        #expect(verified.status == 0, "\(verified.errors)")
        #expect(verified.output.first?.hasSuffix("pooled=\(entries)") == true, "\(verified.output) \(cluster.gateway.errorOutput.suffix(2000))")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/verify_ledger.py").path
        let python = try await TestProcess(
            name: "verify-ledger",
            executable: try await PythonClients.interpreter(),
            arguments: [script, export],
            directory: cluster.directory
        )
        #expect(await python.waitForExit(timeout: .seconds(60)) == 0, "\(python.errorOutput.suffix(2000))")
        #expect(python.output.first == verified.output.first.map { String($0.dropFirst("OK ".count)) })
    }

    /// The planner weighs nodes by their link's round trip, measured with HTTP/2 PING. Four lenders where three
    /// suffice, each dialling through its own `DelayProxy`: the one the last tie-break (the smallest ids) would take
    /// is moved 100 ms away each way once it has linked. `/api/nodes` shows every link's round trip, and the pool
    /// leaves the far node out.
    @Test func aPoolLeavesOutTheNodeFarthestFromTheGateway() async throws {
        try await Cluster.with(label: "pool-near", gatewayArguments: ["--auto-pools", "on", "--pool-context", "8192"]) { cluster in
            var lenders: [(process: TestProcess, id: NodeID, proxy: DelayProxy)] = []
            defer { for lender in lenders { lender.proxy.close() } }
            for name in ["near-a", "near-b", "near-c", "near-d"] {
                let proxy = try await DelayProxy(to: cluster.meshPort, delay: .zero)
                let process = try await TestProcess(
                    name: name,
                    executable: try TestEnvironment.hearthBinary(),
                    arguments: try cluster.poolNodeArguments(name: name, lentMiB: 150, join: cluster.join(throughPort: proxy.port)),
                    directory: cluster.directory
                )
                let ready = try await process.waitForLine { $0.hasPrefix("READY node=") }
                lenders.append((process, try #require(NodeID(String(ready.dropFirst("READY node=".count)))), proxy))
            }
            try await cluster.waitForLenders(4)
            let far = try #require(lenders.min { $0.id.rawValue < $1.id.rawValue })
            far.proxy.setDelay(.milliseconds(100))

            // Polled, bounded: a PING goes beside every report poll (5 s apart when nothing changes).
            let roundTrips = try await eventually("the far link's round trip", within: .seconds(120)) { () -> [String: Double]? in
                let nodes = try await HTTP.get(cluster.url + "/api/nodes").json.arrayValue ?? []
                let measured = Dictionary(
                    nodes.compactMap { node in
                        node["nodeID"]?.stringValue.flatMap { id in node["linkRoundTripMilliseconds"]?.doubleValue.map { (id, $0) } }
                    },
                    uniquingKeysWith: { first, _ in first }
                )
                // Farthest as measured, by a margin: the round trips are smoothed, and beside a CPU hog a near link's
                // has been measured at 108 ms while the far one's had reached 70 (the planner rightly left out the
                // near one then).
                let farthest = measured[far.id.rawValue] ?? 0
                let others = measured.filter { $0.key != far.id.rawValue }.values.max() ?? .infinity
                return measured.count == 4 && farthest > 40 && farthest > others + 20 ? measured : nil
            }
            #expect(roundTrips.values.allSatisfy { $0 > 0 }, "\(roundTrips)")

            let refusal = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(refusal.status == 503, "\(refusal.text)")
            // The reconciler plans the pool just after the request created it: polled, bounded, until it has a plan.
            let pool = try await eventually("the pool's plan", within: .seconds(60)) { () -> JSONValue? in
                let pool = try await Self.pool(cluster)
                return pool["members"]?.arrayValue?.isEmpty == false ? pool : nil
            }
            let planned = Set(pool["members"]?.arrayValue?.compactMap { $0["node"]?.stringValue } ?? [])
            #expect(planned.count == 3, "\(pool)")
            #expect(!planned.contains(far.id.rawValue), "the pool took the far node: \(pool), round trips \(roundTrips)")
            for lender in lenders { _ = await lender.process.stop() }
        }
    }

    /// Starts pool-only nodes and returns them with their NodeIDs.
    static func startLenders(_ names: [String], cluster: Cluster) async throws -> [(process: TestProcess, id: NodeID)] {
        var started: [(TestProcess, NodeID)] = []
        for name in names {
            let process = try await TestProcess(
                name: name,
                executable: try TestEnvironment.hearthBinary(),
                arguments: try poolNodeArguments(name, cluster: cluster),
                directory: cluster.directory
            )
            let ready = try await process.waitForLine { $0.hasPrefix("READY node=") }
            started.append((process, try #require(NodeID(String(ready.dropFirst("READY node=".count))))))
        }
        return started
    }

    static func pool(_ cluster: Cluster) async throws -> JSONValue {
        try #require(try await HTTP.get(cluster.url + "/api/pools").json["pools"]?[0])
    }

    static func incidents(_ cluster: Cluster) -> [String] {
        cluster.gateway.errorOutput.split(separator: "\n").filter { $0.contains("pool incident:") }.map(String.init)
    }

    /// Waits until `pid` is gone.
    static func waitUntilGone(_ pid: Int32, timeout: Duration = .seconds(20)) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while processIsAlive(pid), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        return !processIsAlive(pid)
    }

    /// A long streamed answer, in the background; returns once the gateway relays it.
    static func streamInBackground(_ cluster: Cluster) async throws -> Task<HTTP.Reply?, Never> {
        var long = question
        long["max_tokens"] = 400
        long["stream"] = true
        let request = long
        let stream = Task { try? await HTTP.post(cluster.url + "/v1/chat/completions", json: request) }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let metrics = try await HTTP.get(cluster.url + "/metrics").text
            if metrics.split(separator: "\n").contains(where: { $0.hasPrefix("hearth_streams_in_flight") && !$0.hasSuffix(" 0") }) { return stream }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestProcessError("the stream did not start")
    }

    @Test func aKilledMemberIsReplacedByTheNodesLeftAndOneThatJoined() async throws {
        try await Cluster.with(label: "pool-loss", gatewayArguments: ["--auto-pools", "on", "--pool-context", "8192"]) { cluster in
            let nodes = try await Self.startLenders(["loss-a", "loss-b", "loss-c"], cluster: cluster)
            try await cluster.waitForLenders(3)
            _ = try await Self.askUntilServed(cluster)
            let first = try await Self.pool(cluster)
            let head = try #require(first["head"]?.stringValue)
            let victim = try #require(nodes.first { $0.id.rawValue != head })
            let victimRPC = try #require(childProcesses(of: victim.process.pid, named: "ggml-rpc-server").first)
            let headNode = try #require(nodes.first { $0.id.rawValue == head })
            let headEngine = try #require(childProcesses(of: headNode.process.pid, named: "llama-server").first)
            // A fourth node joins while the pool serves; it is not needed until a member is lost.
            let late = try await Self.startLenders(["loss-d"], cluster: cluster)[0]
            try await cluster.waitForLenders(4)

            let stream = try await Self.streamInBackground(cluster)
            victim.process.send(SIGKILL)
            _ = await stream.value
            // The member's rpc-server dies with its node, and the head's engine, which lost a peer, is replaced.
            #expect(try await Self.waitUntilGone(victimRPC), "ggml-rpc-server outlived its node")
            #expect(try await Self.waitUntilGone(headEngine), "the head's old engine outlived the plan")

            _ = try await Self.askUntilServed(cluster, recovering: true)
            let second = try await Self.pool(cluster)
            #expect(second["state"]?.stringValue == "ready")
            #expect((second["epoch"]?.integerValue ?? 0) >= 2)
            let members = Set(second["members"]?.arrayValue?.compactMap { $0["node"]?.stringValue } ?? [])
            #expect(members.count == 3)
            #expect(!members.contains(victim.id.rawValue))
            #expect(members.contains(late.id.rawValue))
            // Exactly one incident, the lost member; the head's crash that followed is part of it.
            let incidents = Self.incidents(cluster)
            #expect(incidents.count == 1, "\(incidents)")
            #expect(incidents.first?.contains("pool.incident=member_lost") == true, "\(incidents)")
            #expect(incidents.first?.contains("node.id=\(victim.id.short)") == true, "\(incidents)")
            let metrics = try await HTTP.get(cluster.url + "/metrics").text.split(separator: "\n")
            #expect(
                metrics.contains { $0.hasPrefix("hearth_pool_incidents_total{kind=\"member_lost\"}") && $0.hasSuffix(" 1") },
                "\(metrics.filter { $0.contains("pool") })"
            )
            #expect(
                metrics.contains { $0.hasPrefix("hearth_pools{state=\"ready\"}") && $0.hasSuffix(" 1.0") },
                "\(metrics.filter { $0.contains("pool") })"
            )

            // Nothing outlives a node that stops.
            let children = (nodes + [late]).flatMap {
                childProcesses(of: $0.process.pid, named: "ggml-rpc-server") + childProcesses(of: $0.process.pid, named: "llama-server")
            }
            for node in nodes + [late] { _ = await node.process.stop() }
            for pid in children { #expect(try await Self.waitUntilGone(pid)) }
        }
    }

    /// SIGKILL the gateway under a serving pool and start it again on the same data folder and mesh port: the nodes
    /// redial, the pool's definition comes back from SQLite, it is planned again with a newer epoch, and it serves.
    /// The head's engine, which lost its relay with the old gateway, is replaced; meanwhile clients get retriable
    /// answers only.
    @Test func aRestartedGatewayPlansItsPoolAgainWithTheNodesThatRedial() async throws {
        let arguments = ["--auto-pools", "on", "--pool-context", "8192"]
        try await Cluster.with(label: "pool-restart", gatewayArguments: arguments) { cluster in
            let nodes = try await Self.startLenders(["restart-a", "restart-b", "restart-c"], cluster: cluster)
            try await cluster.waitForLenders(3)
            _ = try await Self.askUntilServed(cluster)
            let before = try await Self.pool(cluster)
            let id = try #require(before["id"]?.stringValue)
            let headNode = try #require(nodes.first { $0.id.rawValue == before["head"]?.stringValue })
            let headEngine = try #require(childProcesses(of: headNode.process.pid, named: "llama-server").first)

            cluster.gateway.send(SIGKILL)
            _ = await cluster.gateway.waitForExit()
            let meshPort = String(cluster.meshPort)
            let restarted = try await TestProcess(
                name: "gateway-restarted",
                executable: try TestEnvironment.hearthBinary(),
                arguments: [
                    "gateway", "--port", "0", "--mesh-host", "127.0.0.1", "--mesh-port", meshPort, "--data-dir", cluster.directory + "/gateway",
                ] + arguments,
                directory: cluster.directory
            )
            defer { Task { _ = await restarted.stop() } }
            let url = String(try await restarted.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))

            // Polled, bounded: until the pool serves again. Every answer before that must say to come back later.
            let deadline = ContinuousClock.now + .seconds(240)
            var refusals: [String] = []
            var served = false
            while !served, ContinuousClock.now < deadline {
                let reply = try await HTTP.post(url + "/v1/chat/completions", json: Self.question)
                if reply.status == 200 {
                    served = true
                } else {
                    #expect([502, 503].contains(reply.status), "\(reply.status): \(reply.text)")
                    #expect(reply.headers.first(name: "retry-after") != nil, "\(reply.status): \(reply.text)")
                    refusals.append(reply.json["error"]?["code"]?.stringValue ?? "\(reply.status)")
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
            #expect(served, "the pool did not serve after the restart; answers: \(Set(refusals)); gateway:\n\(restarted.errorOutput.suffix(3000))")
            let after = try #require(try await HTTP.get(url + "/api/pools").json["pools"]?.arrayValue)
            #expect(after.count == 1)
            #expect(after.first?["id"]?.stringValue == id, "the restored pool is not the one the gateway had")
            #expect(after.first?["state"]?.stringValue == "ready")
            #expect((after.first?["epoch"]?.integerValue ?? 0) > (before["epoch"]?.integerValue ?? 0))
            #expect(try await Self.waitUntilGone(headEngine), "the head's engine from before the restart still runs")
            for node in nodes { _ = await node.process.stop() }
            _ = await restarted.stop()
        }
    }

    /// RPC carries raw structs of one build: a node whose `llama-server` says it is another build is never planned
    /// with the others, even when the pool then cannot be made, and is left out once a third node of the pinned build
    /// joins. Its engine is a stand-in script that reports build 9000 and runs the real engine otherwise.
    @Test func aNodeOfAnotherBuildIsNeverPooledWithTheOthers() async throws {
        try await Cluster.with(label: "pool-build", gatewayArguments: ["--auto-pools", "on", "--pool-context", "8192"]) { cluster in
            let wrapper = cluster.directory + "/llama-server-b9000"
            let body = """
                #!/bin/sh
                case "$1" in --version) echo 'version: 0.0.1 (build 9000, commit f00)' >&2; exit 0;; esac
                exec \(try TestEnvironment.llamaServer()) "$@"

                """
            try body.write(toFile: wrapper, atomically: true, encoding: .utf8)
            chmod(wrapper, 0o755)
            var arguments = try Self.poolNodeArguments("build-odd", cluster: cluster)
            arguments[try #require(arguments.firstIndex(of: "--llama-server")) + 1] = wrapper
            let odd = try await TestProcess(
                name: "build-odd",
                executable: try TestEnvironment.hearthBinary(),
                arguments: arguments,
                directory: cluster.directory
            )
            let oddID = String(try await odd.waitForLine { $0.hasPrefix("READY node=") }.dropFirst("READY node=".count))
            let nodes = try await Self.startLenders(["build-a", "build-b"], cluster: cluster)
            try await cluster.waitForLenders(3)
            let listed = try await HTTP.get(cluster.url + "/api/nodes").json.arrayValue ?? []
            let oddBuild = listed.first { $0["nodeID"]?.stringValue == oddID }?["pool"]?["build"]?["llamaCpp"]?.integerValue
            #expect(oddBuild == 9000, "\(listed)")

            // Three lenders, but only two of one build: no pool, and the client is not told one is warming (the
            // network has no way to serve the model now).
            let refused = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect([404, 503].contains(refused.status), "\(refused.text)")
            #expect(refused.json["error"]?["code"]?.stringValue != "pool_warming", "\(refused.text)")
            #expect(try await HTTP.get(cluster.url + "/api/pools").json["pools"]?.arrayValue?.isEmpty == true)

            let third = try await Self.startLenders(["build-c"], cluster: cluster)
            try await cluster.waitForLenders(4)
            _ = try await Self.askUntilServed(cluster)
            let pool = try await Self.pool(cluster)
            let members = Set(pool["members"]?.arrayValue?.compactMap { $0["node"]?.stringValue } ?? [])
            #expect(members == Set((nodes + third).map(\.id.rawValue)), "\(pool)")
            for node in nodes + third { _ = await node.process.stop() }
            _ = await odd.stop()
        }
    }

    @Test func aFrozenMemberIsFoundByTheStallWatchAndThePoolRecovers() async throws {
        let arguments = ["--auto-pools", "on", "--pool-context", "8192", "--pool-stall-timeout", "6s"]
        try await Cluster.with(label: "pool-stall", gatewayArguments: arguments) { cluster in
            let nodes = try await Self.startLenders(["stall-a", "stall-b", "stall-c"], cluster: cluster)
            try await cluster.waitForLenders(3)
            _ = try await Self.askUntilServed(cluster)
            let rpc = try #require(nodes.flatMap { childProcesses(of: $0.process.pid, named: "ggml-rpc-server") }.first)

            let stream = try await Self.streamInBackground(cluster)
            // The rpc-server freezes; its node and its link stay up, so only the head's progress can tell.
            kill(rpc, SIGSTOP)
            let frozenAt = ContinuousClock.now
            _ = await stream.value
            let (_, _) = try await Self.askUntilServed(cluster, recovering: true)
            let recovered = ContinuousClock.now - frozenAt
            let incidents = Self.incidents(cluster)
            #expect(incidents.count == 1, "\(incidents)")
            #expect(incidents.first?.contains("pool.incident=stall") == true, "\(incidents)")
            // The bound: the stall timeout, plus the watch's 2 s period and a report, plus the time to warm again.
            #expect(recovered < .seconds(120), "recovered after \(recovered)")
            #expect(!processIsAlive(rpc), "the frozen rpc-server was not stopped")
            for node in nodes { _ = await node.process.stop() }
        }
    }

    /// One of the three nodes sits behind a real NAT: it only dials out, and still serves its share through the relay.
    @Test func aMemberBehindNATServesItsShareThroughTheRelay() async throws {
        let network: NATNetwork
        do {
            network = try NATNetwork()
        } catch let unavailable as NATUnavailable {
            print("SKIPPED aMemberBehindNATServesItsShareThroughTheRelay: \(unavailable)")
            return
        }
        defer { network.remove() }
        let arguments = ["--auto-pools", "on", "--pool-context", "8192", "--mesh-host", network.hostAddress]
        try await Cluster.with(label: "pool-nat", gatewayArguments: arguments) { cluster in
            var nodes = try await Self.startLenders(["nat-a", "nat-b"], cluster: cluster)
            // `ip netns exec` has no cgroup hierarchies, so this node runs its engines unconfined (see NATTests).
            let command = network.launcher(
                [try TestEnvironment.hearthBinary()] + (try Self.poolNodeArguments("nat-c", cluster: cluster)) + ["--no-sandbox"]
            )
            let behind = try await TestProcess(
                name: "nat-c",
                executable: command[0],
                arguments: Array(command.dropFirst()),
                directory: cluster.directory
            )
            let ready = try await behind.waitForLine { $0.hasPrefix("READY node=") }
            let behindID = try #require(NodeID(String(ready.dropFirst("READY node=".count))))
            nodes.append((behind, behindID))
            try await cluster.waitForLenders(3)
            let (reply, _) = try await Self.askUntilServed(cluster)
            let content = reply.json["choices"]?[0]?["message"]?["content"]?.stringValue ?? ""
            #expect(!content.isEmpty)
            let members = try await Self.pool(cluster)["members"]?.arrayValue?.compactMap { $0["node"]?.stringValue } ?? []
            #expect(members.contains(behindID.rawValue), "the node behind NAT is not in the pool: \(members)")
            #expect(cluster.gateway.errorOutput.contains("mesh.remote=[IPv4]\(network.routerAddress)"))
            for node in nodes { _ = await node.process.stop() }
        }
    }
}
