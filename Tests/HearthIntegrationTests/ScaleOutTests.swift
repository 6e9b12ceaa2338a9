import AsyncHTTPClient
import Foundation
import HearthCore
import HearthGateway
import HearthStore
import HearthTesting
import Logging
import NIOCore
import NIOHTTP1
import Testing

// Two gateways, a node with its engine and PostgreSQL load the machine: these take their turn with the other
// machine-loading suites.
extension OneAtATime {
    /// Two gateway processes on one real PostgreSQL (docs/SCALE-OUT.md): what a load balancer in front of them needs is
    /// that either can take any request. Logins, API keys and quotas are one service; each gateway keeps its own ledger
    /// chain in the shared database, and an export of every chain verifies.
    @Suite(.serialized, .timeLimit(.minutes(4)))
    struct ScaleOutTests {
        @Test func twoGatewaysOnOneDatabaseShareLoginsKeysAndQuotasAndEachKeepsItsChain() async throws {
            let database = try await PostgresServer.shared.database("scaleout")
            // A small hourly quota, so that a few requests through one gateway empty the caller's bucket on both.
            let shared = ["--database", database, "--anonymous-tokens-per-hour", "400", "--max-tokens-per-hour", "400"]
            try await Cluster.with(label: "scale-a", gatewayArguments: shared) { a in
                try await Cluster.with(label: "scale-b", gatewayArguments: shared) { b in
                    let aID = try #require(a.join.split(separator: "#").last.map(String.init))
                    let bID = try #require(b.join.split(separator: "#").last.map(String.init))
                    #expect(aID != bID, "each gateway has its own key")

                    // Logged in through A and B at once: the nonce A issued is spent on B, and only once.
                    let user = IdentityKey.generate()
                    let publicKey = JSONValue.string(user.publicKey.base64EncodedString())
                    let nonce = try #require(
                        try await HTTP.post(a.url + "/api/auth/challenge", json: ["public_key": publicKey]).json["nonce"]?.stringValue
                    )
                    let proof: JSONValue = [
                        "public_key": publicKey, "nonce": .string(nonce),
                        "signature": .string(try user.sign(LoginProtocol.message(nonce: nonce)).base64EncodedString()),
                    ]
                    let verified = try await HTTP.post(b.url + "/api/auth/verify", json: proof)
                    #expect(verified.status == 200, "\(verified.text)")
                    #expect(try await HTTP.post(a.url + "/api/auth/verify", json: proof).status == 401, "a nonce is spent once across gateways")
                    let token = try #require(verified.json["token"]?.stringValue)
                    let auth = [("authorization", "Bearer \(token)")]
                    #expect(try await HTTP.get(a.url + "/api/keys", headers: auth).status == 200, "B's token works on A")

                    // An API key made on A answers on B, and revoked on B it is refused on A.
                    let created = try await HTTP.post(a.url + "/api/keys", json: ["name": "laptop"], headers: auth)
                    #expect(created.status == 201)
                    let key = try #require(created.json["key"]?.stringValue)
                    let keyID = try #require(created.json["id"]?.stringValue)
                    #expect(try await HTTP.get(b.url + "/api/reciprocity/standing", headers: [("authorization", "Bearer \(key)")]).status == 200)

                    _ = try await a.startNode("node-a")
                    try await a.waitForReadyNodes(1)
                    let chat: JSONValue = [
                        "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Tell me about rivers."]],
                        "max_tokens": 48,
                    ]
                    let keyed = try await HTTP.post(a.url + "/v1/chat/completions", json: chat, headers: [("authorization", "Bearer \(key)")])
                    #expect(keyed.status == 200, "\(keyed.text)")
                    let revoked = try await HTTP.delete(b.url + "/api/keys/\(keyID)", headers: auth)
                    #expect(revoked.status < 300, "\(revoked.text)")
                    #expect(
                        try await HTTP.post(a.url + "/v1/chat/completions", json: chat, headers: [("authorization", "Bearer \(key)")]).status == 401
                    )

                    // Anonymous requests through A spend the address's hour; B, which serves nothing itself, then refuses
                    // the same caller for want of quota: the bucket is one row both read.
                    var spent = false
                    for _ in 0..<20 {
                        let reply = try await HTTP.post(a.url + "/v1/chat/completions", json: chat)
                        if reply.status == 429 {
                            spent = true
                            break
                        }
                        #expect(reply.status == 200, "\(reply.text)")
                    }
                    #expect(spent, "A never ran out of the 400-token hour")
                    let refused = try await HTTP.post(b.url + "/v1/chat/completions", json: chat)
                    #expect(refused.status == 429, "\(refused.text)")
                    #expect(refused.json["error"]?["code"]?.stringValue == "token_quota_exceeded")

                    // Every chain, exported through B (which can sign only its own head), verifies; so does A's own
                    // export with its signed head, by Hearth and by the independent Python verifier.
                    let credited = try await eventually("A's chain to hold the served requests") { () -> Int64? in
                        let chains = try await HTTP.get(b.url + "/api/ledger/chains").json["data"]?.arrayValue ?? []
                        let entries = chains.first { $0["gateway"]?.stringValue == aID }?["entries"]?.integerValue ?? 0
                        return entries >= 2 ? entries : nil
                    }
                    let all = a.directory + "/all.jsonl"
                    let exported = try await TestProcess.hearth(["ledger", "export", "--url", b.url, "--all", "--out", all], in: a.directory)
                    #expect(exported.status == 0, "\(exported.errors)")
                    let checked = try await TestProcess.hearth(["ledger", "verify", all], in: a.directory)
                    #expect(checked.status == 0, "\(checked.errors)")
                    #expect(checked.output.first?.hasPrefix("OK entries=\(credited)") == true, "\(checked.output)")
                    #expect(checked.output.contains { $0.hasPrefix("chain=\(aID)") && $0.contains("unsigned") }, "\(checked.output)")
                    let own = a.directory + "/a.jsonl"
                    #expect(try await TestProcess.hearth(["ledger", "export", "--url", a.url, "--out", own], in: a.directory).status == 0)
                    let signed = try await TestProcess.hearth(["ledger", "verify", own, "--gateway", aID], in: a.directory)
                    #expect(signed.status == 0, "\(signed.errors)")
                    #expect(signed.output.contains { $0.hasPrefix("chain=\(aID)") && $0.hasSuffix(" signed") }, "\(signed.output)")
                    // B's own chain is empty and A's head cannot be vouched for by B.
                    #expect(try await TestProcess.hearth(["ledger", "verify", all, "--gateway", bID], in: a.directory).status == 1)

                    let python = try await PythonClients.interpreter()
                    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/verify_ledger.py").path
                    let independent = try await TestProcess(
                        name: "verify-ledger",
                        executable: python,
                        arguments: [script, all],
                        directory: a.directory
                    )
                    #expect(await independent.waitForExit(timeout: .seconds(60)) == 0, "\(independent.errorOutput.suffix(2000))")
                    #expect(independent.output.last == "OK")
                }
            }
        }

        /// A gateway of the network on a fixed mesh port (so a restart answers at the same address).
        func startGateway(
            _ name: String,
            directory: String,
            meshPort: Int,
            database: String,
            networkKey: String
        ) async throws -> (TestProcess, String) {
            let gateway = try await TestProcess(
                name: name,
                executable: try TestEnvironment.hearthBinary(),
                arguments: [
                    "gateway", "--port", "0", "--mesh-host", "127.0.0.1", "--mesh-port", "\(meshPort)", "--data-dir", "\(directory)/\(name)",
                    "--database", database, "--network-key", networkKey,
                ],
                directory: directory
            )
            let ready = try await gateway.waitForLine { $0.hasPrefix("READY url=") }
            return (gateway, String(ready.dropFirst("READY url=".count)))
        }

        /// Nodes join a network of two gateways with both addresses; when the one they are linked to is killed, they
        /// move to the other, which serves them, and the killed one records its cut-off request when it comes back.
        @Test func nodesMoveToTheNextGatewayOfTheNetworkWhenTheirsIsKilled() async throws {
            let database = try await PostgresServer.shared.database("failover")
            let directory = try TestEnvironment.temporaryDirectory("scale-failover")
            let keyFile = directory + "/network.key"
            let created = try await TestProcess.hearth(["gateway", "network-key", "--out", keyFile], in: directory)
            let network = try #require(created.output.first { $0.hasPrefix("network=") }?.dropFirst("network=".count), "\(created.errors)")
            let ports = (try TestEnvironment.freePort(), try TestEnvironment.freePort())
            var (a, aURL) = try await startGateway("gateway-a", directory: directory, meshPort: ports.0, database: database, networkKey: keyFile)
            let (b, bURL) = try await startGateway("gateway-b", directory: directory, meshPort: ports.1, database: database, networkKey: keyFile)
            #expect(a.output.contains { $0.hasSuffix("#net:\(network)") }, "\(a.output)")
            // The directory both gateways keep in the database gives the join string that lists them, oldest first.
            let join = try await eventually("both gateways in the directory") { () -> String? in
                let directory = try await HTTP.get(bURL + "/api/gateways").json
                return (directory["data"]?.arrayValue?.count == 2) ? directory["join"]?.stringValue : nil
            }
            #expect(join == "127.0.0.1:\(ports.0),127.0.0.1:\(ports.1)#net:\(network)")
            let node = try await TestProcess(
                name: "node",
                executable: try TestEnvironment.hearthBinary(),
                arguments: try Cluster.nodeArguments(name: "node", directory: directory, join: join),
                directory: directory
            )
            var processes = [node, b]
            defer {
                let all = processes + [a]
                Task { for process in all { await process.stop() } }
            }
            func readyNodes(_ url: String) async throws -> Int64? {
                let models = try await HTTP.get(url + "/v1/models").json["data"]?.arrayValue ?? []
                let count = models.first { $0["id"]?.stringValue == DefaultModel.id.rawValue }?["hearth"]?["nodes"]?.integerValue ?? 0
                return count > 0 ? count : nil
            }
            _ = try await eventually("the node to link to the first gateway of its join string", within: .seconds(120)) { try await readyNodes(aURL) }
            #expect(try await readyNodes(bURL) == nil, "a node links to one gateway")

            // B has no node: it forwards to A over the link it dialed to A, A's node answers, A meters and credits the
            // request once and B records nothing of it.
            let small: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Say hi."]], "max_tokens": 8,
            ]
            let forwarded = try await eventually("B to forward to A", within: .seconds(60), every: .milliseconds(250)) { () -> HTTP.Reply? in
                let reply = try await HTTP.post(bURL + "/v1/chat/completions", json: small)
                return reply.status == 200 ? reply : nil
            }
            let forwardedID = try #require(forwarded.headers.first(name: "x-hearth-served-request-id"), "\(forwarded.headers)")
            let aID = try #require(try await HTTP.get(aURL + "/api/gateways").json["gateway"]?.stringValue)
            #expect(forwarded.headers.first(name: "x-hearth-gateway") == String(aID.prefix(12)), "the answer says which gateway served it")
            // A name without quantization is read as local routing reads it (the catalog's pinned file).
            var base = small
            base["model"] = "smollm2-135m-instruct"
            let byBaseName = try await HTTP.post(bURL + "/v1/chat/completions", json: base)
            #expect(byBaseName.status == 200 && byBaseName.headers.first(name: "x-hearth-gateway") == String(aID.prefix(12)), "\(byBaseName.text)")
            var streamed = small
            streamed["stream"] = true
            let stream = try await HTTP.post(bURL + "/v1/chat/completions", json: streamed)
            #expect(stream.status == 200 && stream.text.contains("data: [DONE]"), "\(stream.text.suffix(300))")
            let ledgerStore = try await GatewayDatabase.open(url: try DatabaseURL(database), logger: Logger(label: "test"))
            let rows = try await eventually("the forwarded request's usage row") { () -> [UsageRecord]? in
                let rows = try await ledgerStore.recentUsage(limit: 200).filter { $0.requestID == forwardedID }
                return rows.isEmpty ? nil : rows
            }
            #expect(rows.count == 1 && rows.first?.status == "ok", "metered once, by the serving gateway: \(rows)")

            // A long answer under way on A when A is killed.
            let chat: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Tell me a long story."]],
                "max_tokens": 400, "stream": true, "ignore_eos": true,
            ]
            var request = HTTPClientRequest(url: aURL + "/v1/chat/completions")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(chat)))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
            let cutID = try #require(response.headers.first(name: "x-request-id"))
            // Tokens are flowing.
            var body = response.body.makeAsyncIterator()
            var received = 0
            while received < 3, let chunk = try await body.next() { received += chunk.readableBytes > 0 ? 1 : 0 }
            // The note is queued off the answer's path: on a loaded machine tokens can outrun its commit. Kill A once it
            // is in the database, which is what a crash can recover from.
            _ = try await eventually("the request's in-flight note") {
                try await ledgerStore.store.read { try $0.queryOne("SELECT 1 AS noted FROM in_flight WHERE request_id = ?", cutID) }
            }
            a.send(SIGKILL)
            _ = await a.waitForExit(timeout: .seconds(20))
            let killedAt = ContinuousClock.now
            _ = try await eventually("the node to move to the second gateway", within: .seconds(60), every: .milliseconds(100)) {
                try await readyNodes(bURL)
            }
            let moved = ContinuousClock.now - killedAt
            print("scale-out: node relinked to the next gateway \(moved) after the first was killed")
            let served = try await HTTP.post(
                bURL + "/v1/chat/completions",
                json: ["model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Hi"]], "max_tokens": 8]
            )
            #expect(served.status == 200, "\(served.text)")
            // B's directory now says B serves the model; A's row ages out after three missed heartbeats.
            let listed = try await eventually("the killed gateway to leave the directory", within: .seconds(60), every: .milliseconds(500)) {
                () -> [JSONValue]? in
                let rows = try await HTTP.get(bURL + "/api/gateways").json["data"]?.arrayValue ?? []
                return rows.count == 1 && rows.first?["models"]?.arrayValue?.isEmpty == false ? rows : nil
            }
            #expect(listed.first?["self"]?.boolValue == true)
            #expect(listed.first?["models"]?.arrayValue?.contains(.string(DefaultModel.id.rawValue)) == true)

            // A comes back on its address and records what it was serving when it died; B's requests are not its own.
            (a, aURL) = try await startGateway("gateway-a", directory: directory, meshPort: ports.0, database: database, networkKey: keyFile)
            processes.append(a)
            let store = try await GatewayDatabase.open(url: try DatabaseURL(database), logger: Logger(label: "test"))
            let cut = try await eventually("the cut-off request's row") {
                try await store.recentUsage(limit: 50).first { $0.requestID == cutID }
            }
            #expect(cut.status == "cut_off")
            #expect(try await store.recentUsage(limit: 50).first { $0.status == "ok" } != nil, "B's answer is stored as served")
        }
    }
}
