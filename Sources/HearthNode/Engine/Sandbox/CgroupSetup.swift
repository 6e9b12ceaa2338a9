import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What holds an engine to the owner's memory and CPU limits. Each engine process joins the node's group before it
/// execs (see `EngineSandbox.launch`), so nothing it allocates escapes the limit.
enum LimitMechanism: Sendable, Equatable {
    /// Directories in cgroup v1 hierarchies (one per controller: memory, cpu).
    case cgroupV1(memory: String, cpu: String?)
    /// One directory in the unified hierarchy.
    case cgroupV2(String)
    /// A transient scope per engine, made by systemd (PID 1 is systemd; `--user` when not root).
    case systemdRun(path: String, user: Bool)
    case none

    var name: String {
        switch self {
        case .cgroupV1: "cgroup-v1"
        case .cgroupV2: "cgroup-v2"
        case .systemdRun: "systemd-run"
        case .none: "none"
        }
    }

    /// The `cgroup.procs` files an engine writes its own pid to before exec.
    var joinFiles: [String] {
        switch self {
        case .cgroupV1(let memory, let cpu): ([memory] + (cpu.map { [$0] } ?? [])).map { $0 + "/cgroup.procs" }
        case .cgroupV2(let directory): [directory + "/cgroup.procs"]
        case .systemdRun, .none: []
        }
    }

    /// How many times the kernel's OOM killer has killed in the group, where the kernel says (`nil` elsewhere).
    var memoryKills: Int? {
        let (file, key): (String, String)
        switch self {
        case .cgroupV1(let memory, _): (file, key) = (memory + "/memory.oom_control", "oom_kill")
        case .cgroupV2(let directory): (file, key) = (directory + "/memory.events", "oom_kill")
        case .systemdRun, .none: return nil
        }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, fields[0] == key { return Int(fields[1]) }
        }
        return nil
    }
}

/// Finds and sets up the limit mechanism of this machine for a node's engines.
enum CgroupSetup {
    /// Sets up a group named `name` with `memoryBytes` and `threads` worth of CPU time.
    /// - Returns: the mechanism, or why there is none.
    static func prepare(name: String, memoryBytes: UInt64?, threads: Int) -> Result<LimitMechanism, SandboxProblem> {
        #if os(Linux)
        if pidOneIsSystemd, let systemdRun = Subprocess.which("systemd-run") {
            return .success(.systemdRun(path: systemdRun, user: geteuid() != 0))
        }
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") {
            return prepareV2(name: name, memoryBytes: memoryBytes, threads: threads)
        }
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/memory.limit_in_bytes") {
            return prepareV1(name: name, memoryBytes: memoryBytes, threads: threads)
        }
        return .failure(SandboxProblem("no cgroup memory controller is mounted (neither v2 nor v1) and PID 1 is not systemd"))
        #else
        return .failure(SandboxProblem("memory and CPU limits need Linux cgroups"))
        #endif
    }

    static var pidOneIsSystemd: Bool { FileManager.default.fileExists(atPath: "/run/systemd/system") }

    /// The systemd-run prefix that starts `unit` as a scope with the limits.
    static func systemdRunPrefix(_ path: String, user: Bool, unit: String, memoryBytes: UInt64?, threads: Int) -> [String] {
        var command = [path] + (user ? ["--user"] : []) + ["--scope", "--quiet", "--collect", "--unit", unit]
        if let memoryBytes { command += ["-p", "MemoryMax=\(memoryBytes)", "-p", "MemorySwapMax=0"] }
        command += ["-p", "CPUQuota=\(threads * 100)%", "--"]
        return command
    }

    /// This process's group path in the hierarchy with `controller` (v1), or the unified one (`""`).
    static func ownGroup(controller: String) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if fields[1].split(separator: ",").contains(Substring(controller)) { return String(fields[2]) }
        }
        return nil
    }

    private static func prepareV1(name: String, memoryBytes: UInt64?, threads: Int) -> Result<LimitMechanism, SandboxProblem> {
        // Under this process's own groups, so the limits of whatever runs the node still hold around the engines.
        let memory = "/sys/fs/cgroup/memory" + normalized(ownGroup(controller: "memory")) + "/" + name
        do {
            try makeGroup(memory)
            if let memoryBytes {
                // The group outlives a node that was killed, with the memory+swap limit of that run; the kernel refuses
                // a memory limit above it (EINVAL), which failed every engine of a node restarted with a larger budget.
                // Lift it first, set the memory limit, then bound memory+swap to the same.
                try? write("-1", to: memory + "/memory.memsw.limit_in_bytes")
                try write(String(memoryBytes), to: memory + "/memory.limit_in_bytes")
                // Swap would let an engine exceed the limit slowly instead of being stopped; not every kernel accounts it.
                try? write(String(memoryBytes), to: memory + "/memory.memsw.limit_in_bytes")
            }
        } catch {
            return .failure(error)
        }
        var cpu: String?
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") {
            let directory = "/sys/fs/cgroup/cpu" + normalized(ownGroup(controller: "cpu")) + "/" + name
            do {
                try makeGroup(directory)
                try write("100000", to: directory + "/cpu.cfs_period_us")
                try write(String(threads * 100_000), to: directory + "/cpu.cfs_quota_us")
                cpu = directory
            } catch {
                return .failure(error)
            }
        }
        return .success(.cgroupV1(memory: memory, cpu: cpu))
    }

    private static func prepareV2(name: String, memoryBytes: UInt64?, threads: Int) -> Result<LimitMechanism, SandboxProblem> {
        // A group that holds processes cannot hand controllers to children, so the engines' group is a sibling of
        // this process's own, under a parent of ours that hands down memory and cpu.
        let own = normalized(ownGroup(controller: ""))
        let parent = "/sys/fs/cgroup" + (own as NSString).deletingLastPathComponent.replacingOccurrences(of: "//", with: "/")
        let base = (parent.hasSuffix("/") ? String(parent.dropLast()) : parent) + "/hearth-engines"
        let directory = base + "/" + name
        do {
            try? write("+memory +cpu", to: (base as NSString).deletingLastPathComponent + "/cgroup.subtree_control")
            try makeGroup(base)
            try write("+memory +cpu", to: base + "/cgroup.subtree_control")
            try makeGroup(directory)
            if let memoryBytes {
                try write(String(memoryBytes), to: directory + "/memory.max")
                try? write("0", to: directory + "/memory.swap.max")
            }
            try write("\(threads * 100_000) 100000", to: directory + "/cpu.max")
        } catch {
            return .failure(error)
        }
        return .success(.cgroupV2(directory))
    }

    private static func normalized(_ path: String?) -> String {
        guard let path, path != "/" else { return "" }
        return path.hasPrefix("/") ? path : "/" + path
    }

    private static func makeGroup(_ path: String) throws(SandboxProblem) {
        if FileManager.default.fileExists(atPath: path) { return }
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw SandboxProblem("cannot create the cgroup \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func write(_ value: String, to path: String) throws(SandboxProblem) {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SandboxProblem("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(value.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw SandboxProblem("cannot write \(value) to \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// A protection the sandbox needs is missing, in words for the owner.
struct SandboxProblem: Error, CustomStringConvertible, Sendable, Equatable {
    var description: String
    init(_ description: String) { self.description = description }
}
