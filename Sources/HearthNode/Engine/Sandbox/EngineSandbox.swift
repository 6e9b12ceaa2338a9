import Foundation
package import HearthCore
package import Logging
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The owner's choices about how engines are confined.
package struct SandboxSettings: Sendable, Equatable {
    /// `false` with `--no-sandbox`: engines run as the node's user, without limits, and every report says so.
    package var enabled: Bool = true
    /// The dedicated user engines run as when the node runs as root.
    package var user: String = "hearth-engine"
    /// That user's home: root-owned copies of the engine binaries (which it can run but not change) and one empty
    /// working folder per engine run, which it owns.
    var home: String = "/var/lib/hearth-engine"

    package init() {}
}

/// Confines a node's engines with least privilege, as far as the machine allows, and says how in the report:
///
/// - as root, engines run as a dedicated unprivileged user (created once, with a log line, by `hearth node
///   --setup-sandbox` or the first run), from a root-owned copy of the binary; as any other user, as that user;
/// - `PR_SET_NO_NEW_PRIVS` (`setpriv --no-new-privs`), an empty working folder of their own, a minimal environment;
/// - the model is handed over as a read-only descriptor (`--model /proc/self/fd/3`), so the engine needs no path
///   into the node's data folder, which stays 0700;
/// - memory (the node's budget and a quarter) and CPU (its thread count) are limited by cgroups, v2 or v1, or a
///   systemd scope.
///
/// A required protection that is missing is a blocker: the node serves nothing and says why, unless the owner
/// passed `--no-sandbox`.
package struct EngineSandbox: Sendable {
    package let report: EngineSandboxReport
    private let settings: SandboxSettings
    private let account: Account?
    private let setpriv: String?
    private let mechanism: LimitMechanism
    private let limits: NodeLimits
    private let workRoot: String
    private let name: String
    /// Installed copies of engine binaries by original path, so a binary is hashed and copied once per process.
    private let copies = InstalledCopies()

    struct Account: Sendable, Equatable {
        var name: String
        var uid: uid_t
        var gid: gid_t
    }

    /// No confinement (`--no-sandbox`), for tests of other parts that start no real engine.
    package static func off(limits: NodeLimits) -> EngineSandbox {
        let report = EngineSandboxReport(
            enforced: false,
            user: currentUserName(),
            noNewPrivileges: false,
            limits: "none",
            memoryLimitBytes: nil,
            cpuThreads: nil,
            modelsReadOnly: false,
            blockers: []
        )
        return EngineSandbox(
            report: report,
            settings: SandboxSettings(),
            account: nil,
            setpriv: nil,
            mechanism: .none,
            limits: limits,
            workRoot: "",
            name: ""
        )
    }

    /// Checks and prepares what the sandbox needs on this machine; creates the sandbox user when running as root
    /// and it does not exist yet.
    package static func prepare(
        settings: SandboxSettings,
        limits: NodeLimits,
        dataDirectory: String,
        name: String,
        logger: Logger
    ) async
        -> EngineSandbox
    {
        let ownUser = currentUserName()
        guard settings.enabled else {
            let sandbox = off(limits: limits)
            logger.warning("\(sandbox.report.summary)")
            return sandbox
        }
        var blockers: [String] = []
        let setpriv = Subprocess.which("setpriv")
        if setpriv == nil { blockers.append("setpriv (util-linux) is not installed; it drops the engine's privileges") }
        var account: Account?
        var workRoot = (dataDirectory as NSString).appendingPathComponent("engine-work")
        if geteuid() == 0 {
            do {
                account = try await ensureUser(settings, logger: logger)
                workRoot = (settings.home as NSString).appendingPathComponent("work")
            } catch {
                blockers.append(error.description)
            }
        }
        var mechanism = LimitMechanism.none
        // The kernel's limit sits a quarter above the budget the node plans engines in: the sizer's estimate is not
        // a ceiling, and the page cache of the mapped weights counts too. At the budget itself engines near it would
        // thrash the weights (shared with every other engine of the same file) instead of being stopped.
        let memoryLimit = limits.memoryBytes.map { $0.addingSaturated($0 / 4) }
        switch CgroupSetup.prepare(name: "hearth-node-\(name)", memoryBytes: memoryLimit, threads: limits.threads) {
        case .success(let found): mechanism = found
        case .failure(let problem): blockers.append("no memory and CPU limits: \(problem)")
        }
        let report = EngineSandboxReport(
            enforced: true,
            user: account?.name ?? ownUser,
            noNewPrivileges: setpriv != nil,
            limits: mechanism.name,
            memoryLimitBytes: mechanism == .none ? nil : memoryLimit,
            cpuThreads: mechanism == .none ? nil : limits.threads,
            modelsReadOnly: account != nil,
            blockers: blockers
        )
        if blockers.isEmpty { logger.info("\(report.summary)") } else { logger.error("\(report.summary)") }
        return EngineSandbox(
            report: report,
            settings: settings,
            account: account,
            setpriv: setpriv,
            mechanism: mechanism,
            limits: limits,
            workRoot: workRoot,
            name: name
        )
    }

    /// How to start one engine.
    struct Launch {
        var command: [String]
        var environment: [String: String]?
        /// Descriptors the child gets as 3, 4, …
        var keep: [Int32]
        /// Closes the parent's copies and removes the working folder; call once the engine has exited.
        var finish: @Sendable () -> Void

        /// Starts the command, its output (both streams) going to a new file at `logPath`; the kernel kills it if
        /// the node dies.
        func spawn(loggingTo logPath: String) async throws -> Subprocess {
            let log = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            defer { if log >= 0 { close(log) } }
            return try await Subprocess.spawn(
                command[0],
                Array(command.dropFirst()),
                environment: environment,
                outputFD: log >= 0 ? log : nil,
                keep: keep,
                dieWithParent: true
            )
        }
    }

    /// As `launch(_:_:)`, on NIO's blocking pool: the first launch hashes and copies the engine binary, which must
    /// not hold up a thread of the cooperative pool (the link's answers run there).
    func prepareLaunch(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Launch {
        // Without the sandbox nothing blocks, and nothing should wait for a pool thread busy hashing a model.
        guard report.enforced else { return try launch(executable, arguments, environment: environment) }
        return try await NIOThreadPool.singleton.runIfActive { try self.launch(executable, arguments, environment: environment) }
    }

    /// The command that starts `executable` with `arguments` inside the sandbox; the value after `--model` is
    /// replaced by the read-only descriptor of that file. It may block (the first time for a binary).
    /// - Throws: `SandboxProblem` when a blocker stands, or the model or the binary cannot be handed over.
    func launch(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) throws(SandboxProblem) -> Launch {
        guard report.enforced else {
            let environment = extra.isEmpty ? nil : ProcessInfo.processInfo.environment.merging(extra) { $1 }
            return Launch(command: [executable] + arguments, environment: environment, keep: [], finish: {})
        }
        guard report.blockers.isEmpty, let setpriv else { throw SandboxProblem(report.summary) }
        var arguments = arguments
        var keep: [Int32] = []
        if let index = arguments.firstIndex(of: "--model"), index + 1 < arguments.count {
            let fd = open(arguments[index + 1], O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SandboxProblem("cannot open the model \(arguments[index + 1]): \(String(cString: strerror(errno)))") }
            let attributes = (try? FileManager.default.attributesOfItem(atPath: arguments[index + 1])) ?? [:]
            let mode = (attributes[.posixPermissions] as? Int) ?? 0
            let group = (attributes[.groupOwnerAccountID] as? Int).map { gid_t($0) }
            if let account, mode & 0o004 == 0, !(group == account.gid && mode & 0o040 != 0) {
                close(fd)
                throw SandboxProblem(
                    "the sandbox user \(account.name) cannot read the model \(arguments[index + 1]) (mode \(String(mode, radix: 8))); make it readable with chmod o+r"
                )
            }
            keep.append(fd)
            arguments[index + 1] = "/proc/self/fd/3"
        }
        let descriptors = keep
        let closeAll: @Sendable () -> Void = { for fd in descriptors { close(fd) } }
        let binary: String
        let work: String
        do {
            binary = try account.map { _ throws(SandboxProblem) in try installedCopy(of: executable) } ?? executable
            work = try makeWorkFolder()
        } catch {
            closeAll()
            throw error
        }
        var inner = [setpriv]
        if let account { inner += ["--reuid=\(account.uid)", "--regid=\(account.gid)", "--clear-groups"] }
        inner += ["--no-new-privs", "--pdeathsig=KILL", "--", binary] + arguments
        var command: [String] = []
        if case .systemdRun(let path, let user) = mechanism {
            let unit = "hearth-engine-\(name)-\(UUID().uuidString.prefix(8).lowercased())"
            command += CgroupSetup.systemdRunPrefix(path, user: user, unit: unit, memoryBytes: report.memoryLimitBytes, threads: limits.threads)
        }
        let joins = mechanism.joinFiles
        // The shell joins the groups as the node's user, before anything of the engine runs, then becomes it. The
        // paths arrive as arguments, never inside the script.
        command += ["/bin/sh", "-c", Self.joinScript, "hearth-engine", work, String(joins.count)] + joins + inner
        let environment = ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"].merging(extra) { $1 }
        return Launch(command: command, environment: environment, keep: keep) {
            closeAll()
            try? FileManager.default.removeItem(atPath: work)
        }
    }

    static let joinScript = #"""
        set -e
        work=$1; count=$2; shift 2
        while [ "$count" -gt 0 ]; do echo $$ > "$1"; shift; count=$((count - 1)); done
        cd "$work"
        unset PWD OLDPWD
        exec "$@"
        """#

    /// How many engines the kernel has killed for memory in this node's group, where the kernel tells.
    var memoryKills: Int? { mechanism.memoryKills }

    /// The exit of an engine in words, saying when the kernel killed it for going over its memory limit.
    func explainExit(status: Int32, killsBefore: Int?) -> String? {
        guard status == 128 + SIGKILL, let before = killsBefore, let after = memoryKills, after > before else { return nil }
        let limit = report.memoryLimitBytes.map { "\($0 >> 20) MiB" } ?? "its limit"
        return "killed by the kernel: the engine went over its memory limit of \(limit) (\(mechanism.name))"
    }

    /// A folder that lasts across engine starts and that the engines may write: `rpc-cache/<node>` beside the work
    /// folders, owned by the sandbox user. ggml-rpc-server keeps its tensor cache there (`LLAMA_CACHE`).
    func persistentFolder(_ purpose: String) throws(SandboxProblem) -> String {
        let root = workRoot.isEmpty ? NSTemporaryDirectory() : (workRoot as NSString).deletingLastPathComponent
        let parent = (root as NSString).appendingPathComponent(purpose)
        let folder = (parent as NSString).appendingPathComponent(name.isEmpty ? "node" : name)
        do {
            // The parent only lets the engine user pass through to its own folder, as the work folders do.
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            _ = chmod(parent, 0o711)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw SandboxProblem("cannot create \(folder): \(error.localizedDescription)")
        }
        if report.enforced, let account, chown(folder, account.uid, account.gid) != 0 {
            throw SandboxProblem("cannot give \(folder) to \(account.name): \(String(cString: strerror(errno)))")
        }
        return folder
    }

    private func makeWorkFolder() throws(SandboxProblem) -> String {
        let work = (workRoot as NSString).appendingPathComponent("\(name)-\(UUID().uuidString.prefix(12).lowercased())")
        do {
            try FileManager.default.createDirectory(atPath: workRoot, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
            try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        } catch {
            throw SandboxProblem("cannot create the engine's working folder \(work): \(error.localizedDescription)")
        }
        if let account, chown(work, account.uid, account.gid) != 0 {
            throw SandboxProblem("cannot give \(work) to \(account.name): \(String(cString: strerror(errno)))")
        }
        return work
    }

    /// A root-owned copy of the engine binary in the sandbox home, which the sandbox user can run but not change,
    /// keyed by the binary's hash (the original usually sits in root's home, which the user cannot enter).
    func installedCopy(of original: String) throws(SandboxProblem) -> String {
        let executable = URL(fileURLWithPath: original).resolvingSymlinksInPath().path
        let attributes = (try? FileManager.default.attributesOfItem(atPath: executable)) ?? [:]
        let key = "\(executable)|\(attributes[.size] ?? "")|\(attributes[.modificationDate] ?? "")"
        if let copy = copies.value(for: key), FileManager.default.isExecutableFile(atPath: copy) { return copy }
        let copy = try install(executable)
        copies.set(copy, for: key)
        return copy
    }

    private func install(_ executable: String) throws(SandboxProblem) -> String {
        let digest: HearthCore.SHA256Digest
        do { digest = try FileDigest.sha256Blocking(path: executable) } catch {
            throw SandboxProblem("cannot read the engine \(executable): \(error)")
        }
        let folder = (settings.home as NSString).appendingPathComponent("engines/\(digest.hex.prefix(16))")
        let copy = (folder as NSString).appendingPathComponent((executable as NSString).lastPathComponent)
        if FileManager.default.isExecutableFile(atPath: copy) { return copy }
        // A name of its own for every copy under way: two engines of one node (or two tests of one process) starting
        // together each copied to the same `.partial-<pid>`, and one's rename took the file from under the other.
        let partial = copy + ".partial-\(getpid())-\(UUID().uuidString.prefix(8))"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try? FileManager.default.removeItem(atPath: partial)
            try FileManager.default.copyItem(atPath: executable, toPath: partial)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: partial)
            guard rename(partial, copy) == 0 else { throw SandboxProblem(String(cString: strerror(errno))) }
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw SandboxProblem("cannot install the engine for the sandbox user in \(folder): \(error)")
        }
        return copy
    }

    /// The sandbox user, created (system account, no login shell, own group) when missing.
    static func ensureUser(_ settings: SandboxSettings, logger: Logger) async throws(SandboxProblem) -> Account {
        if let account = lookUp(settings.user) { return try prepareHome(settings, account) }
        guard let useradd = Subprocess.which("useradd") ?? ["/usr/sbin/useradd", "/sbin/useradd"].first(where: FileManager.default.isExecutableFile)
        else { throw SandboxProblem("the sandbox user \(settings.user) does not exist and useradd is not installed to create it") }
        logger.notice(
            "creating the sandbox user for engines (once)",
            metadata: ["node.sandbox.user": "\(settings.user)", "node.sandbox.home": "\(settings.home)"]
        )
        let arguments = ["--system", "--user-group", "--no-create-home", "--home-dir", settings.home, "--shell", "/usr/sbin/nologin", settings.user]
        let status: Int32
        do {
            status = await (try Subprocess.spawn(useradd, arguments)).waitForExit()
        } catch {
            throw SandboxProblem("cannot run useradd: \(error)")
        }
        // Another node on this machine may have created it meanwhile.
        guard let account = lookUp(settings.user) else {
            throw SandboxProblem("useradd could not create the sandbox user \(settings.user) (status \(status))")
        }
        return try prepareHome(settings, account)
    }

    private static func prepareHome(_ settings: SandboxSettings, _ account: Account) throws(SandboxProblem) -> Account {
        do {
            try FileManager.default.createDirectory(atPath: settings.home, withIntermediateDirectories: true)
            try FileManager.default.setAttributes(
                [.posixPermissions: 0o755, .ownerAccountID: 0, .groupOwnerAccountID: 0],
                ofItemAtPath: settings.home
            )
        } catch {
            throw SandboxProblem("cannot prepare the sandbox home \(settings.home): \(error.localizedDescription)")
        }
        return account
    }

    static func lookUp(_ name: String) -> Account? {
        guard let entry = getpwnam(name) else { return nil }
        return Account(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    static func currentUserName() -> String {
        getpwuid(geteuid()).map { String(cString: $0.pointee.pw_name) } ?? "uid \(geteuid())"
    }
}

/// Original binary (path, size, modification time) → its installed copy.
private final class InstalledCopies: Sendable {
    private let copies = Mutex<[String: String]>([:])

    func value(for key: String) -> String? { copies.withLock { $0[key] } }
    func set(_ copy: String, for key: String) { copies.withLock { $0[key] = copy } }
}
