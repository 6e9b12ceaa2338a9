import Foundation
import HearthStore
import Logging

/// A real PostgreSQL server for tests, from Debian's `postgresql` package: one per test process, started on first
/// use in a folder of its own (`initdb`, trust authentication on loopback, `fsync=off`), listening on a free port and
/// dying with the test process. Each test takes a database of its own (`database(_:)`).
///
/// PostgreSQL refuses to run as root; as root the server runs as the package's `postgres` user (`setpriv`).
package actor PostgresServer {
    package static let shared = PostgresServer()

    private var started: (process: TestProcess, port: Int)?
    /// The start under way: the actor is reentrant across its awaits, and every test asking at once must get the one
    /// server, not start its own.
    private var starting: Task<(process: TestProcess, port: Int), any Error>?
    private var databases = 0

    /// Where the server's programs are (`HEARTH_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/*/bin`), or nil.
    package static var binaries: String? {
        if let explicit = ProcessInfo.processInfo.environment["HEARTH_POSTGRES_BIN"], !explicit.isEmpty { return explicit }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        return versions.last.map { "\(root)/\($0)/bin" }.flatMap { FileManager.default.fileExists(atPath: $0 + "/postgres") ? $0 : nil }
    }

    /// A new, empty database on the shared server, as a URL for `--database`.
    package func database(_ label: String) async throws -> String {
        let port = try await start()
        databases += 1
        let name = "\(label.lowercased().filter { $0.isLetter || $0.isNumber })_\(databases)_\(UUID().uuidString.prefix(6).lowercased())"
        let admin = try PostgresStore(url: try DatabaseURL(Self.url(port: port, database: "postgres")), connections: 1, logger: Logger(label: "test"))
        defer { Task { await admin.close() } }
        _ = try await admin.read { session in try session.execute("CREATE DATABASE \(name)") }
        return Self.url(port: port, database: name)
    }

    /// A connection may take long to open on a machine the suite saturates (a 10 s connect timed out beside stress-ng).
    static func url(port: Int, database: String) -> String { "postgres://hearth@127.0.0.1:\(port)/\(database)?connect_timeout=60" }

    private func start() async throws -> Int {
        if let started { return started.port }
        let task = starting ?? Task { try await Self.launch() }
        starting = task
        do {
            let launched = try await task.value
            started = launched
            return launched.port
        } catch {
            starting = nil
            throw error
        }
    }

    private static func launch() async throws -> (process: TestProcess, port: Int) {
        guard let binaries else {
            throw TestProcessError("PostgreSQL is not installed (apt-get install postgresql, or set HEARTH_POSTGRES_BIN)")
        }
        let directory = try TestEnvironment.temporaryDirectory("postgres")
        let data = directory + "/data"
        let asUser: [String]
        if geteuid() == 0 {
            guard let user = getpwnam("postgres") else {
                throw TestProcessError("running as root, and there is no 'postgres' user to run PostgreSQL as")
            }
            guard chown(directory, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
                throw TestProcessError("cannot hand \(directory) to postgres")
            }
            // The test run's temporary root is private (mktemp -d: 0700): the server's user must be able to pass
            // through it to its own folder. Traversal only, no listing.
            var parent = (directory as NSString).deletingLastPathComponent
            while parent != "/" && !parent.isEmpty {
                let attributes = try? FileManager.default.attributesOfItem(atPath: parent)
                if (attributes?[.ownerAccountID] as? NSNumber)?.intValue == 0, let mode = (attributes?[.posixPermissions] as? NSNumber)?.intValue,
                    mode & 0o001 == 0
                {
                    try? FileManager.default.setAttributes([.posixPermissions: mode | 0o001], ofItemAtPath: parent)
                }
                parent = (parent as NSString).deletingLastPathComponent
            }
            // Changing user clears the parent-death signal: set it again (SIGQUIT: an immediate shutdown, backends too).
            asUser = ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--pdeathsig=QUIT", "--"]
        } else {
            asUser = []
        }
        func command(_ program: String, _ arguments: [String]) -> (String, [String]) {
            let full = [binaries + "/" + program] + arguments
            return asUser.isEmpty ? (full[0], Array(full.dropFirst())) : (asUser[0], Array(asUser.dropFirst()) + full)
        }
        let (initdb, initArguments) = command("initdb", ["-D", data, "-A", "trust", "-U", "hearth", "--no-sync", "-E", "UTF8"])
        let setup = try await TestProcess(name: "initdb", executable: initdb, arguments: initArguments, directory: directory)
        let status = await setup.waitForExit(timeout: .seconds(120))
        guard status == 0 else { throw TestProcessError("initdb failed (\(status)): \(setup.errorOutput)") }
        let port = try TestEnvironment.freePort()
        let (postgres, arguments) = command(
            "postgres",
            [
                "-D", data, "-k", directory, "-h", "127.0.0.1", "-p", "\(port)", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
                "max_connections=200",
            ]
        )
        let server = try await TestProcess(name: "postgres", executable: postgres, arguments: arguments, directory: directory)
        let probe = try PostgresStore(url: try DatabaseURL(Self.url(port: port, database: "postgres")), connections: 1, logger: Logger(label: "test"))
        defer { Task { await probe.close() } }
        _ = try await eventually("PostgreSQL to accept connections", within: .seconds(120), every: .milliseconds(100)) { () -> Bool? in
            guard server.isRunning else { throw TestProcessError("postgres exited: \(server.errorOutput)") }
            return (try? await probe.ping()) != nil ? true : nil
        }
        return (server, port)
    }
}
