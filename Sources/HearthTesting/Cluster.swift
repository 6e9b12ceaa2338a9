import AsyncHTTPClient
import Foundation
package import HearthCore
package import NIOCore
import NIOFoundationEssentialsCompat
package import NIOHTTP1
import Synchronization

/// Real `hearth` processes for integration tests: a gateway and nodes serving the default model with the
/// provisioned llama-server. Each cluster owns a temporary folder.
package final class Cluster: Sendable {
    package let directory: String
    package let gateway: TestProcess
    package let url: String
    /// The join string the gateway printed: its mesh address and key id.
    package let join: String

    /// `--header-timeout` for gateways the tests start, which are not testing it (see `init`).
    package static let patientHeaderTimeout = ["--header-timeout", "120s"]

    /// Starts `hearth gateway --port 0 --mesh-host 127.0.0.1 --mesh-port 0` with `arguments` added.
    ///
    /// The gateway waits `patientHeaderTimeout` for a request head instead of 10 s: early in a full run beside
    /// stress-ng, a connection this test process had opened went without its request for longer than that, and the
    /// gateway closed it as a silent client. Then the process's Swift task pool is busy for seconds at a time (a probe
    /// saw tasks resumed up to 6.8 s late while the event loops stayed within 0.24 s). `arguments` may set another.
    package init(label: String, gatewayArguments: [String] = []) async throws {
        directory = try TestEnvironment.temporaryDirectory(label)
        gateway = try await TestProcess(
            name: "gateway",
            executable: try TestEnvironment.hearthBinary(),
            arguments: ["gateway", "--port", "0", "--mesh-host", "127.0.0.1", "--mesh-port", "0", "--data-dir", directory + "/gateway"]
                + Self.patientHeaderTimeout + gatewayArguments,
            directory: directory
        )
        let ready = try await gateway.waitForLine { $0.hasPrefix("READY url=") }
        url = String(ready.dropFirst("READY url=".count))
        join = String(try await gateway.waitForLine { $0.hasPrefix("JOIN ") }.dropFirst("JOIN ".count))
    }

    /// Starts a node serving the default model, joined with `join` (the gateway's own join string by default),
    /// and returns once it has started; `waitForReadyNodes` waits for the gateway to route to it. `launcher` wraps
    /// the command, e.g. to run it in another network namespace.
    package func startNode(
        _ name: String,
        join: String? = nil,
        extraArguments: [String] = [],
        launcher: ([String]) -> [String] = { $0 }
    ) async throws -> TestProcess {
        let arguments = try Self.nodeArguments(name: name, directory: directory, join: join ?? self.join)
        let command = launcher([try TestEnvironment.hearthBinary()] + arguments + extraArguments)
        let node = try await TestProcess(
            name: name,
            executable: command[0],
            arguments: Array(command.dropFirst()),
            directory: directory
        )
        started.withLock { $0.append(node) }
        _ = try await node.waitForLine { $0.hasPrefix("READY node=") }
        return node
    }

    /// Starts a node that runs no engine of its own: `arguments` say what it serves (e.g. `--backend`), after its
    /// join, data folder and name.
    package func startNode(_ name: String, serving arguments: [String]) async throws -> TestProcess {
        let node = try await TestProcess(
            name: name,
            executable: try TestEnvironment.hearthBinary(),
            arguments: ["node", "--join", join, "--data-dir", "\(directory)/\(name)", "--name", name, "--no-dashboard"] + arguments,
            directory: directory
        )
        started.withLock { $0.append(node) }
        _ = try await node.waitForLine { $0.hasPrefix("READY node=") }
        return node
    }

    /// The arguments of `hearth node` serving the default model with one thread.
    package static func nodeArguments(name: String, directory: String, join: String) throws -> [String] {
        [
            "node", "--join", join, "--data-dir", "\(directory)/\(name)", "--name", name,
            "--llama-server", try TestEnvironment.llamaServer(), "--model", DefaultModel.id.rawValue,
            "--models-dir", (try TestEnvironment.defaultModel() as NSString).deletingLastPathComponent, "--threads", "1",
        ]
    }

    /// The arguments of `hearth node --pool-only`: a node that serves no model alone and lends `lentMiB` MiB to pools,
    /// out of a memory limit of `lentMiB + 50` MiB.
    package func poolNodeArguments(name: String, lentMiB: Int, join: String? = nil) throws -> [String] {
        var arguments = try Self.nodeArguments(name: name, directory: directory, join: join ?? self.join)
        if let index = arguments.firstIndex(of: "--model") { arguments.removeSubrange(index...(index + 1)) }
        return arguments + ["--pool-only", "--pool-memory", "\(lentMiB)MiB", "--memory", "\(lentMiB + 50)MiB"]
    }

    /// The gateway's mesh port, from its join string (`host:port#gateway-id`).
    package var meshPort: Int {
        Int(join.split(separator: "#")[0].split(separator: ":").last!)!
    }

    /// A join string that dials `port` on loopback (say a `DelayProxy` to the mesh port) and pins this gateway's key.
    package func join(throughPort port: Int) -> String {
        "127.0.0.1:\(port)#" + join.split(separator: "#")[1]
    }

    /// Polls `/api/nodes` until `count` nodes lend memory to pools.
    package func waitForLenders(_ count: Int, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let nodes = try await HTTP.get(url + "/api/nodes").json.arrayValue ?? []
            if nodes.filter({ $0["pool"]?["memoryBytes"] != nil }).count >= count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestProcessError("the gateway did not see \(count) nodes lending memory; gateway stderr:\n\(gateway.errorOutput.suffix(3000))")
    }

    /// Polls `/v1/models` until the default model has `count` ready nodes.
    package func waitForReadyNodes(_ count: Int, timeout: Duration = .seconds(90)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await readyNodeCount() == count { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw TestProcessError("the gateway did not list \(count) ready nodes in time; gateway stderr:\n\(gateway.errorOutput.suffix(3000))")
    }

    /// The number of ready nodes serving the default model, as `/v1/models` says.
    /// Short node id (as `X-Hearth-Node` gives it) → the node's name, from the gateway's node list.
    package func nodeNames() async throws -> [String: String] {
        let nodes = try await HTTP.get(url + "/api/nodes").json.arrayValue ?? []
        var names: [String: String] = [:]
        for node in nodes {
            if let id = node["nodeID"]?.stringValue, let name = node["name"]?.stringValue { names[String(id.prefix(12))] = name }
        }
        return names
    }

    package func readyNodeCount() async throws -> Int {
        let models = try await HTTP.get(url + "/v1/models").json
        let entry = models["data"]?.arrayValue?.first { $0["id"]?.stringValue == DefaultModel.id.rawValue }
        return Int(entry?["hearth"]?["nodes"]?.integerValue ?? 0)
    }

    /// Runs `body` with a new cluster and stops every process it started, whether `body` succeeds or throws.
    package static func with<T>(
        isolation: isolated (any Actor)? = #isolation,
        label: String,
        gatewayArguments: [String] = [],
        _ body: (Cluster) async throws -> T
    ) async throws -> T {
        let cluster = try await Cluster(label: label, gatewayArguments: gatewayArguments)
        do {
            let value = try await body(cluster)
            await cluster.stopAll()
            return value
        } catch {
            await cluster.stopAll()
            throw error
        }
    }

    private let started = Mutex<[TestProcess]>([])

    /// Stops every process this cluster started that still runs, nodes first.
    package func stopAll() async {
        for process in started.withLock({ $0 }).reversed() { await process.stop() }
        await gateway.stop()
    }
}

/// A plain HTTP client for tests.
package enum HTTP {
    package struct Reply: Sendable {
        package var status: Int
        package var headers: HTTPHeaders
        package var body: ByteBuffer
        package var text: String { String(buffer: body) }
        package var json: JSONValue { (try? JSONDecoder().decode(JSONValue.self, from: body)) ?? .null }
    }

    package static func get(_ url: String, headers: [(String, String)] = []) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return try await send(request)
    }

    package static func delete(_ url: String, headers: [(String, String)] = []) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .DELETE
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        return try await send(request)
    }

    /// `timeout` bounds the whole exchange: a test that a request fails soon sets it below what a hung one would take.
    package static func post(
        _ url: String,
        json: JSONValue,
        headers: [(String, String)] = [],
        timeout: Duration = .seconds(120)
    ) async throws -> Reply {
        try await post(url, body: ByteBuffer(bytes: try JSONEncoder().encode(json)), headers: headers, timeout: timeout)
    }

    package static func post(
        _ url: String,
        body: ByteBuffer,
        headers: [(String, String)] = [],
        timeout: Duration = .seconds(120)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .bytes(body)
        return try await send(request, timeout: timeout)
    }

    static func send(_ request: HTTPClientRequest, timeout: Duration = .seconds(120)) async throws -> Reply {
        let response = try await HTTPClient.shared.execute(request, timeout: TimeAmount(timeout))
        let body = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: body)
    }

    /// The JSON payloads of a server-sent-event body, `[DONE]` excluded.
    package static func events(_ body: String) -> [JSONValue] {
        body.components(separatedBy: "\n\n").compactMap { event in
            guard event.hasPrefix("data: "), !event.hasSuffix("[DONE]") else { return nil }
            return try? JSONDecoder().decode(JSONValue.self, from: Data(event.dropFirst(6).utf8))
        }
    }

    /// The text of a chat stream's events.
    package static func streamedText(_ body: String) -> String {
        events(body).compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined()
    }
}
