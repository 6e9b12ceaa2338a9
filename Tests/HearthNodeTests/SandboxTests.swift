import Foundation
import HearthTesting
import Logging
import Testing

@testable import HearthCore
@testable import HearthNode

#if canImport(Glibc)
import Glibc
#endif

/// The engine sandbox on this machine, with real processes and the kernel's own checks. Switching users and making
/// cgroups needs root (as CI runs); elsewhere these tests are skipped, and say so.
@Suite(.enabled(if: geteuid() == 0, "the sandbox needs root to switch users and create cgroups"))
struct SandboxTests {
    static let logger = Logger(label: "sandbox-test")

    static func prepare(_ limits: NodeLimits, settings: SandboxSettings = SandboxSettings()) async throws -> (EngineSandbox, String) {
        let directory = try TestEnvironment.temporaryDirectory("sandbox")
        let name = "t" + Hex.random(bytes: 4)
        let sandbox = await EngineSandbox.prepare(settings: settings, limits: limits, dataDirectory: directory, name: name, logger: logger)
        return (sandbox, name)
    }

    /// The fields of /proc/PID/status.
    static func status(of pid: Int32) -> [String: String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    /// Waits, polling with a bound, until `condition` holds; fails naming `what` otherwise.
    static func eventually(_ what: String, within limit: Duration, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while !condition() {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Supervises the default model with the real engine inside `sandbox`; cancel the task to stop it.
    static func supervise(
        _ sandbox: EngineSandbox,
        limits: NodeLimits,
        extraArguments: [String] = []
    ) throws -> (handle: EngineHandle, supervisor: Task<Void, any Error>) {
        let spec = ModelSpec(id: DefaultModel.id, path: try TestEnvironment.defaultModel(), sha256: DefaultModel.sha256)
        let handle = EngineHandle(spec: spec)
        let directory = try TestEnvironment.temporaryDirectory("sandbox-node")
        let configuration = NodeConfiguration().with {
            $0.dataDirectory = directory
            $0.llamaServerPath = (try? TestEnvironment.llamaServer()) ?? "llama-server"
            $0.limits = limits
            $0.extraEngineArguments = extraArguments
        }
        let supervisor = Task {
            try await EngineSupervisorService(
                handle: handle,
                configuration: configuration,
                preparation: Preparation(nil),
                sandbox: sandbox,
                logger: logger
            )
            .run()
        }
        return (handle, supervisor)
    }

    @Test(.timeLimit(.minutes(3)))
    func theEngineRunsAsTheSandboxUserWithNoNewPrivilegesInItsOwnGroupAndFolder() async throws {
        let limits = NodeLimits(threads: 1, contextSize: 256, parallelSlots: 1, memoryBytes: 1 << 30)
        let (sandbox, name) = try await Self.prepare(limits)
        #expect(sandbox.report.blockers.isEmpty, "\(sandbox.report.blockers)")
        #expect(sandbox.report.user == "hearth-engine")
        #expect(sandbox.report.noNewPrivileges && sandbox.report.modelsReadOnly)
        #expect(["cgroup-v1", "cgroup-v2", "systemd-run"].contains(sandbox.report.limits))
        let account = try #require(EngineSandbox.lookUp("hearth-engine"))

        let (handle, supervisor) = try Self.supervise(sandbox, limits: limits)
        defer { supervisor.cancel() }
        try await Self.eventually("the engine to be ready", within: .seconds(120)) {
            handle.snapshot.state == .ready || handle.snapshot.state == .failed
        }
        #expect(handle.snapshot.state == .ready, "\(handle.snapshot.detail ?? "")")
        let pid = try #require(handle.snapshot.pid)
        let status = Self.status(of: pid)
        #expect(status["Uid"]?.split(separator: "\t").first == Substring(String(account.uid)), "Uid: \(status["Uid"] ?? "?")")
        #expect(status["NoNewPrivs"] == "1")
        let groups = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? ""
        if sandbox.report.limits.hasPrefix("cgroup") {
            #expect(groups.contains("hearth-node-\(name)"), "\(groups)")
        }
        let cwd = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd")) ?? ""
        #expect(cwd.hasPrefix("/var/lib/hearth-engine/work/\(name)-"), "cwd \(cwd)")
        // The environment is the sandbox's own: nothing of the node's (tokens, paths) reaches the engine.
        let environment = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ"))) ?? Data()
        let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        #expect(Set(variables.map { String($0.prefix { $0 != "=" }) }) == ["PATH", "HOME", "TMPDIR", "LANG"])
    }

    /// What the kernel lets the sandbox user do: read the model through the descriptor it is handed, and neither
    /// write the model nor put anything in its folder. The "engine" here is a shell, to try exactly that.
    @Test(.timeLimit(.minutes(1)))
    func theEngineCanReadTheModelButNotWriteItOrItsFolder() async throws {
        let (sandbox, _) = try await Self.prepare(NodeLimits(threads: 1, contextSize: 256, parallelSlots: 1, memoryBytes: 256 << 20))
        let models = try TestEnvironment.temporaryDirectory("sandbox-models")
        let model = models + "/model.gguf"
        try Data("GGUF and then weights".utf8).write(to: URL(fileURLWithPath: model))
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: model)
        // The node's own folders are 0755 here, the kindest case: even so the engine cannot write.
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: models)
        let probe = #"""
            id -u
            head -c 4 "$2"; echo
            if echo x >> "$2" 2>/dev/null; then echo wrote-model; else echo model-refused; fi
            if echo x >> "$3/model.gguf" 2>/dev/null; then echo wrote-path; else echo path-refused; fi
            if touch "$3/new" 2>/dev/null; then echo wrote-folder; else echo folder-refused; fi
            pwd; ls -A | wc -l
            """#
        let launch = try sandbox.launch("/bin/sh", ["-c", probe, "probe", "--model", model, models])
        defer { launch.finish() }
        // `--model` was swapped for the descriptor: $1 is the flag, $2 the descriptor, $3 the folder.
        #expect(launch.command.suffix(3) == ["--model", "/proc/self/fd/3", models] || launch.command.contains("/proc/self/fd/3"))
        let pipe = try Subprocess.makePipe()
        let process = try await Subprocess.spawn(
            launch.command[0],
            Array(launch.command.dropFirst()),
            environment: launch.environment,
            outputFD: pipe.write,
            keep: launch.keep
        )
        close(pipe.write)
        let status = await process.waitForExit()
        let output = String(decoding: FileHandle(fileDescriptor: pipe.read, closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
        let lines = output.split(separator: "\n").map(String.init)
        let account = try #require(EngineSandbox.lookUp("hearth-engine"))
        #expect(status == 0, "\(output)")
        #expect(lines.first == String(account.uid), "\(output)")
        #expect(lines.contains("GGUF"), "\(output)")
        #expect(lines.contains("model-refused") && lines.contains("path-refused") && lines.contains("folder-refused"), "\(output)")
        #expect(!FileManager.default.fileExists(atPath: models + "/new"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: model)) == Data("GGUF and then weights".utf8))
        // Its own empty working folder.
        #expect(lines.suffix(2).first?.hasPrefix("/var/lib/hearth-engine/work/") == true, "\(output)")
        #expect(lines.last?.trimmingCharacters(in: .whitespaces) == "0", "\(output)")
    }

    /// An engine that allocates past the node's memory limit is killed by the kernel, and the node says so. The
    /// owner's extra `--ctx-size` (the last one wins) makes a KV cache of gigabytes against a budget of 200 MiB.
    @Test(.timeLimit(.minutes(3)))
    func anEngineOverItsMemoryLimitIsKilledByTheKernelAndReportedSo() async throws {
        let limits = NodeLimits(threads: 1, contextSize: 256, parallelSlots: 1, memoryBytes: 200 << 20)
        let (sandbox, _) = try await Self.prepare(limits)
        try #require(sandbox.report.blockers.isEmpty, "\(sandbox.report.blockers)")
        try #require(sandbox.memoryKills != nil, "this kernel does not count OOM kills per group")
        let (handle, supervisor) = try Self.supervise(sandbox, limits: limits, extraArguments: ["--ctx-size", "262144"])
        defer { supervisor.cancel() }
        try await Self.eventually("the engine to be killed for memory", within: .seconds(120)) {
            handle.snapshot.detail?.contains("killed by the kernel") == true
        }
        // The kernel's limit is the budget and a quarter: 250 MiB.
        #expect(sandbox.report.memoryLimitBytes == 250 << 20)
        #expect(handle.snapshot.detail?.contains("memory limit of 250 MiB") == true, "\(handle.snapshot.detail ?? "")")
        #expect((sandbox.memoryKills ?? 0) >= 1)
    }

    /// A protection that cannot be had is a refusal, not a quiet downgrade: here the sandbox user cannot be created.
    @Test(.timeLimit(.minutes(1)))
    func aMissingProtectionRefusesToServeAndSaysHowToOptOut() async throws {
        var settings = SandboxSettings()
        settings.user = "no such user!"
        let limits = NodeLimits(threads: 1, contextSize: 256, parallelSlots: 1, memoryBytes: 256 << 20)
        let (sandbox, _) = try await Self.prepare(limits, settings: settings)
        #expect(!sandbox.report.blockers.isEmpty)
        #expect(sandbox.report.summary.contains("--no-sandbox"))
        #expect(throws: SandboxProblem.self) { try sandbox.launch("/bin/true", []) }

        let (handle, supervisor) = try Self.supervise(sandbox, limits: limits)
        defer { supervisor.cancel() }
        try await Self.eventually("the engine to be refused", within: .seconds(30)) { handle.snapshot.state == .failed }
        #expect(handle.snapshot.detail?.hasPrefix("refused: engine sandbox unavailable") == true, "\(handle.snapshot.detail ?? "")")
        #expect(handle.snapshot.starts == 0)
    }

    /// Two engines of one node starting together: each gets the sandbox's copy of the binary, whole (the copies under
    /// way once shared one partial name per process, and one's rename took the file from under the other).
    @Test(.timeLimit(.minutes(1)))
    func enginesStartingTogetherEachGetTheInstalledCopy() async throws {
        var settings = SandboxSettings()
        settings.home = try TestEnvironment.temporaryDirectory("sandbox-home")
        let (sandbox, _) = try await Self.prepare(NodeLimits(threads: 1, contextSize: 512, parallelSlots: 1), settings: settings)
        guard sandbox.report.enforced else {
            Issue.record("the sandbox is not enforced here: \(sandbox.report.summary)")
            return
        }
        // An executable of 16 MiB, so that the copies overlap.
        let binary = try TestEnvironment.temporaryDirectory("sandbox-binary") + "/llama-server"
        let bytes = Data((0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try bytes.write(to: URL(fileURLWithPath: binary))
        _ = chmod(binary, 0o755)
        let copies = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<6 { group.addTask { try sandbox.installedCopy(of: binary) } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(copies).count == 1)
        let copy = try #require(copies.first)
        #expect(FileManager.default.contents(atPath: copy) == bytes)
        #expect(FileManager.default.isExecutableFile(atPath: copy))
        // Nothing half-copied is left beside it.
        let folder = (copy as NSString).deletingLastPathComponent
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["llama-server"])
    }
}

struct SandboxOffTests {
    /// A node killed and started again finds its group as the last run left it; a larger budget must still apply
    /// (cgroup v1 refused a memory limit above the old memory+swap limit).
    @Test func aNodeStartedAgainWithALargerBudgetGetsItsGroup() throws {
        let name = "t" + Hex.random(bytes: 4)
        guard case .success(let first) = CgroupSetup.prepare(name: name, memoryBytes: 64 << 20, threads: 1) else {
            Issue.record("no cgroup on this machine")
            return
        }
        // An empty group goes with rmdir(2), not by deleting its control files.
        defer {
            if case .cgroupV1(let memory, let cpu) = first {
                _ = rmdir(memory)
                _ = cpu.map { rmdir($0) }
            }
        }
        guard case .success(let second) = CgroupSetup.prepare(name: name, memoryBytes: 256 << 20, threads: 1) else {
            Issue.record("the group of a previous run with a smaller limit refused the larger one")
            return
        }
        if case .cgroupV1(let memory, _) = second {
            let limit = try String(contentsOfFile: memory + "/memory.limit_in_bytes", encoding: .utf8)
            #expect(limit.trimmingCharacters(in: .whitespacesAndNewlines) == String(256 << 20))
        }
    }

    @Test func turningTheSandboxOffIsStatedInTheReport() async throws {
        var settings = SandboxSettings()
        settings.enabled = false
        let sandbox = await EngineSandbox.prepare(
            settings: settings,
            limits: NodeLimits(threads: 1, contextSize: 1, parallelSlots: 1),
            dataDirectory: NSTemporaryDirectory(),
            name: "off",
            logger: Logger(label: "test")
        )
        #expect(!sandbox.report.enforced)
        #expect(sandbox.report.summary.contains("OFF (--no-sandbox)"))
        let launch = try sandbox.launch("/bin/echo", ["--model", "/m"])
        #expect(launch.command == ["/bin/echo", "--model", "/m"] && launch.keep.isEmpty)
    }
}
