import Foundation
import HearthCore
import HearthNode
import HearthTesting

/// One proxy the `proxies` part measures: where clients reach it, the name they ask for, and the processes whose CPU
/// and memory are its cost (none for the mock reached directly).
struct ProxyTarget {
    var name: String
    var url: String
    var model: String
    var processes: @Sendable () -> [Int32]
    var version: String
    var stop: @Sendable () async -> Void
    /// Headers every request carries (LiteLLM's master key).
    var headers: [(String, String)] = []

    var chat: String { url + "/v1/chat/completions" }

    /// CPU seconds of its processes so far.
    func cpu() -> Double { processes().reduce(0) { $0 + cpuSeconds(of: $1) } }
}

/// Starting each proxy in front of the mock, as its users would run it.
enum ProxyTargets {
    static func direct(_ mock: String) -> ProxyTarget {
        ProxyTarget(name: "direct", url: mock, model: MockUpstream.name, processes: { [] }, version: "–", stop: {})
    }

    /// nginx from Debian: one worker, no buffering (so events pass as they come), keep-alive to the upstream.
    static func nginx(in directory: String, upstream: String, connections: Int) async throws -> ProxyTarget? {
        let binary = "/usr/sbin/nginx"
        guard FileManager.default.isExecutableFile(atPath: binary) else { return nil }
        let port = try TestEnvironment.freePort()
        let upstreamHost = upstream.replacingOccurrences(of: "http://", with: "")
        let configuration = """
            worker_processes 1;
            worker_rlimit_nofile \(connections * 2 + 64);
            daemon off;
            pid \(directory)/nginx.pid;
            error_log \(directory)/nginx-error.log warn;
            events { worker_connections \(connections * 2 + 64); }
            http {
                access_log off;
                client_body_temp_path \(directory)/body;
                proxy_temp_path \(directory)/proxy;
                upstream mock { server \(upstreamHost); keepalive 128; }
                server {
                    listen 127.0.0.1:\(port) backlog=4096;
                    location / {
                        proxy_pass http://mock;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_buffering off;
                        proxy_read_timeout 600s;
                    }
                }
            }
            """
        try configuration.write(toFile: directory + "/nginx.conf", atomically: true, encoding: .utf8)
        let process = try await TestProcess(
            name: "nginx",
            executable: binary,
            arguments: ["-p", directory, "-c", directory + "/nginx.conf"],
            directory: directory
        )
        let url = "http://127.0.0.1:\(port)"
        try await waitUntilAnswering(url + "/v1/models", process: process)
        let master = process.pid
        return ProxyTarget(
            name: "nginx",
            url: url,
            model: MockUpstream.name,
            processes: { [master] + childProcesses(of: master, named: "nginx") },
            version: (try? await output(of: binary, ["-v"])) ?? "nginx",
            stop: { _ = await process.stop() }
        )
    }

    /// LiteLLM's proxy from PyPI, in the venv `<cache>/litellm` (`python3 -m venv ~/.cache/hearth/litellm && ~/.cache/hearth/litellm/bin/pip install 'litellm[proxy]'`); `nil` when it is not installed.
    static func litellm(in directory: String, upstream: String) async throws -> ProxyTarget? {
        let venv = EngineInstaller.defaultCacheDirectory() + "/litellm"
        let binary = venv + "/bin/litellm"
        guard FileManager.default.isExecutableFile(atPath: binary) else { return nil }
        let port = try TestEnvironment.freePort()
        // LiteLLM refuses to start without a master key; this one lives as long as the run.
        let key = "sk-bench-" + Hex.random(bytes: 16)
        let configuration = """
            general_settings:
              master_key: \(key)
            model_list:
              - model_name: \(MockUpstream.name)
                litellm_params:
                  model: openai/\(MockUpstream.name)
                  api_base: \(upstream)/v1
                  api_key: none
            litellm_settings:
              drop_params: true
              telemetry: false
            """
        try configuration.write(toFile: directory + "/litellm.yaml", atomically: true, encoding: .utf8)
        let process = try await TestProcess(
            name: "litellm",
            executable: binary,
            arguments: ["--config", directory + "/litellm.yaml", "--host", "127.0.0.1", "--port", String(port), "--num_workers", "1"],
            environment: ["LITELLM_LOG": "ERROR", "NO_DOCS": "True", "DISABLE_ADMIN_UI": "True", "LITELLM_TELEMETRY": "False"],
            directory: directory
        )
        let url = "http://127.0.0.1:\(port)"
        try await waitUntilAnswering(url + "/health/liveliness", process: process, within: .seconds(180))
        let root = process.pid
        let version =
            (try? await output(of: venv + "/bin/python", ["-c", "import importlib.metadata as m; print('litellm ' + m.version('litellm'))"]))
            ?? "litellm"
        return ProxyTarget(
            name: "LiteLLM",
            url: url,
            model: MockUpstream.name,
            processes: { [root] + descendants(of: root) },
            version: version,
            stop: { _ = await process.stop() },
            headers: [("authorization", "Bearer \(key)")]
        )
    }

    /// `hearth gateway` and a `hearth node --backend` on the mock, two processes as on two machines.
    static func hearth(in directory: String, upstream: String, slots: Int) async throws -> (target: ProxyTarget, gateway: Int32, node: Int32) {
        let gateway = try await hearthGateway(in: directory, name: "gateway")
        let node = try await backendNode(in: directory, name: "node", join: gateway.join, upstream: upstream, slots: slots)
        try await HearthBench.waitForModel(DefaultModel.id, at: gateway.url)
        let (gatewayPID, nodePID) = (gateway.process.pid, node.pid)
        let target = ProxyTarget(
            name: "Hearth",
            url: gateway.url,
            model: DefaultModel.id.rawValue,
            processes: { [gatewayPID, nodePID] },
            version: "hearth \(HearthVersion.current) (gateway + node with --backend)",
            stop: {
                _ = await node.stop()
                _ = await gateway.process.stop()
            }
        )
        return (target, gatewayPID, nodePID)
    }

    /// A `hearth gateway` whose limits let one load generator on 127.0.0.1 through, with `arguments` added (a database,
    /// a network key); where clients reach it and the join string its nodes use.
    static func hearthGateway(
        in directory: String,
        name: String,
        arguments: [String] = []
    ) async throws -> (process: TestProcess, url: String, join: String) {
        // Every client of the benchmark comes from 127.0.0.1: without these, the per-address limits a public gateway
        // needs would refuse them (connections past --max-connections-per-address are reset).
        let limits = [
            "--rate-limit", "100000000", "--anonymous-tokens-per-hour", "1000000000000", "--max-tokens-per-hour", "1000000000000",
            "--max-connections-per-address", "100000",
        ]
        let gateway = try await TestProcess(
            name: name,
            executable: try TestEnvironment.hearthBinary(),
            arguments: [
                "gateway", "--port", "0", "--mesh-host", "127.0.0.1", "--mesh-port", "0", "--data-dir", directory + "/" + name, "--log-level",
                "warning",
            ] + limits + arguments,
            directory: directory
        )
        let url = String(try await gateway.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
        let join = String(try await gateway.waitForLine { $0.hasPrefix("JOIN ") }.dropFirst("JOIN ".count))
        return (gateway, url, join)
    }

    /// A `hearth node --backend` serving the mock as the default model, with `slots` requests at once.
    static func backendNode(in directory: String, name: String, join: String, upstream: String, slots: Int) async throws -> TestProcess {
        try await TestProcess(
            name: name,
            executable: try TestEnvironment.hearthBinary(),
            arguments: [
                "node", "--join", join, "--data-dir", directory + "/" + name, "--name", name, "--no-dashboard", "--log-level", "warning",
                "--backend", "openai:\(upstream)/v1", "--backend-model", "\(MockUpstream.name)=\(DefaultModel.id)", "--parallel", String(slots),
            ],
            directory: directory
        )
    }

    static func waitUntilAnswering(_ url: String, process: TestProcess, within limit: Duration = .seconds(30)) async throws {
        _ = try await eventually("\(process.name) to answer", within: limit, every: .milliseconds(200)) { () -> Bool? in
            guard process.isRunning else { throw BenchError("\(process.name) exited:\n\(process.errorOutput.suffix(2000))") }
            return (try? await HTTP.get(url))?.status == 200 ? true : nil
        }
    }

    /// What a short command prints (both streams), first line.
    static func output(of executable: String, _ arguments: [String]) async throws -> String {
        let directory = try TestEnvironment.temporaryDirectory("version")
        let process = try await TestProcess(name: "version", executable: executable, arguments: arguments, directory: directory)
        _ = await process.waitForExit(timeout: .seconds(30))
        let text = (process.output + process.errorOutput.split(separator: "\n").map(String.init)).first { !$0.isEmpty } ?? ""
        return text.trimmingCharacters(in: .whitespaces)
    }
}

/// Every process below `pid`, whatever its name.
func descendants(of pid: Int32) -> [Int32] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    let children = entries.compactMap(Int32.init).filter { candidate in
        guard let stat = try? String(contentsOfFile: "/proc/\(candidate)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return false
        }
        // After the name: state, then the parent's id.
        return stat[stat.index(after: close)...].split(separator: " ").dropFirst().first == Substring(String(pid))
    }
    return children + children.flatMap { descendants(of: $0) }
}
