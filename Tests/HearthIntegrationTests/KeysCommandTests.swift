import Foundation
import HearthTesting
import Testing

@testable import HearthCore

/// `hearth keys` through the real binary, with the key checked by an independent implementation
/// (Python's `cryptography` package).
struct KeysCommandTests {
    func hearth(_ arguments: [String], in directory: String) async throws -> (status: Int32, output: [String]) {
        let run = try await TestProcess.hearth(arguments, in: directory)
        return (run.status, run.output)
    }

    @Test(.timeLimit(.minutes(1)))
    func makesShowsAndExportsAKeyOtherToolsRead() async throws {
        let directory = try TestEnvironment.temporaryDirectory("keys")
        let file = directory + "/me.key"
        let made = try await hearth(["keys", "new", "--file", file], in: directory)
        #expect(made.status == 0)
        let nodeID = try #require(made.output.first { $0.hasPrefix("node-id=") }).dropFirst("node-id=".count)

        let shown = try await hearth(["keys", "show", "--file", file], in: directory)
        #expect(shown.output.contains("node-id=\(nodeID)"))
        #expect(shown.output.contains("short=\(nodeID.prefix(12))"))

        let refused = try await hearth(["keys", "new", "--file", file], in: directory)
        #expect(refused.status != 0, "an existing key must not be replaced without --force")
        #expect(try await hearth(["keys", "show", "--file", file], in: directory).output.contains("node-id=\(nodeID)"))

        let exported = try await hearth(["keys", "export-public", "--file", file], in: directory)
        let publicPEM = exported.output.joined(separator: "\n") + "\n"
        try publicPEM.write(toFile: directory + "/me.pub", atomically: true, encoding: .utf8)

        // Python's cryptography reads both files; the public key it derives hashes to the same NodeID.
        let check = """
            import hashlib, sys
            from cryptography.hazmat.primitives import serialization as s
            private = s.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
            public = s.load_pem_public_key(open(sys.argv[2], "rb").read())
            raw = lambda k: k.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
            assert raw(private.public_key()) == raw(public)
            print(hashlib.sha256(raw(public)).hexdigest())
            """
        try check.write(toFile: directory + "/check.py", atomically: true, encoding: .utf8)
        let python = try await TestProcess(
            name: "check",
            executable: "/usr/bin/env",
            arguments: ["python3", directory + "/check.py", file, directory + "/me.pub"],
            directory: directory
        )
        #expect(await python.waitForExit() == 0, "\(python.errorOutput)")
        #expect(python.output.last == String(nodeID))
    }

    @Test(.timeLimit(.minutes(1)))
    func logsInWithAKeyAndGetsAWorkingToken() async throws {
        try await Cluster.with(label: "login", gatewayArguments: ["--require-auth"]) { cluster in
            let key = cluster.directory + "/user.key"
            #expect(try await hearth(["keys", "new", "--file", key], in: cluster.directory).status == 0)
            let login = try await hearth(["login", "--url", cluster.url, "--key", key], in: cluster.directory)
            #expect(login.status == 0)
            let token = try #require(login.output.first { $0.hasPrefix("token=ht_") }).dropFirst("token=".count)
            #expect(try await HTTP.get(cluster.url + "/v1/models").status == 401)
            #expect(try await HTTP.get(cluster.url + "/v1/models", headers: [("authorization", "Bearer \(token)")]).status == 200)
        }
    }
}
