/// How a node confines its engines, as its report states it: the gateway shows it, and a node whose engines cannot
/// be confined says why here instead of serving.
package struct EngineSandboxReport: Codable, Sendable, Equatable {
    /// `false` only when the owner passed `--no-sandbox`.
    package var enforced: Bool
    /// The user engines run as (a dedicated one when the node runs as root, else the node's own).
    var user: String
    /// Engines start with `PR_SET_NO_NEW_PRIVS`: nothing they exec can gain privileges.
    var noNewPrivileges: Bool
    /// What enforces the memory and CPU limits: `cgroup-v2`, `cgroup-v1`, `systemd-run`, or `none`.
    var limits: String
    package var memoryLimitBytes: UInt64?
    /// CPU quota, in threads' worth of time.
    var cpuThreads: Int?
    /// The engine cannot write the model files or their folder.
    var modelsReadOnly: Bool
    /// Required protections that are missing; while any is, the node serves nothing.
    package var blockers: [String]

    package init(
        enforced: Bool,
        user: String,
        noNewPrivileges: Bool,
        limits: String,
        memoryLimitBytes: UInt64?,
        cpuThreads: Int?,
        modelsReadOnly: Bool,
        blockers: [String]
    ) {
        self.enforced = enforced
        self.user = user
        self.noNewPrivileges = noNewPrivileges
        self.limits = limits
        self.memoryLimitBytes = memoryLimitBytes
        self.cpuThreads = cpuThreads
        self.modelsReadOnly = modelsReadOnly
        self.blockers = blockers
    }

    /// One line for logs and pages.
    package var summary: String {
        guard enforced else { return "engine sandbox OFF (--no-sandbox): engines run as \(user) without limits" }
        if !blockers.isEmpty { return "engine sandbox unavailable: \(blockers.joined(separator: "; ")) (pass --no-sandbox to run without it)" }
        var parts = ["engines run as \(user)"]
        if noNewPrivileges { parts.append("no_new_privs") }
        var limit = "limits: \(limits)"
        if let memoryLimitBytes { limit += ", memory \(memoryLimitBytes >> 20) MiB" }
        if let cpuThreads { limit += ", cpu \(cpuThreads) thread\(cpuThreads == 1 ? "" : "s")" }
        parts.append(limit)
        parts.append(modelsReadOnly ? "models read-only" : "models writable by the engine (same user as the node)")
        return "engine sandbox: " + parts.joined(separator: ", ")
    }
}
