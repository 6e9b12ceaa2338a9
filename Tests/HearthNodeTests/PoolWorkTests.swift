import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import HearthCore
@testable import HearthMesh
@testable import HearthNode

/// The node's pool routes: what it refuses before running anything, and a real ggml-rpc-server started, reached,
/// replaced and stopped on the gateway's word.
struct PoolWorkTests {
    static let me = NodeID(String(repeating: "a", count: 64))!
    static let other = NodeID(String(repeating: "b", count: 64))!
    static let third = NodeID(String(repeating: "c", count: 64))!

    static func worker(
        memory: UInt64 = 200 << 20,
        rpcServer: String = "/nonexistent/ggml-rpc-server",
        directory: String = NSTemporaryDirectory(),
        startTimeout: Duration = .seconds(30)
    ) -> PoolWorker {
        let limits = NodeLimits(threads: 1, contextSize: 2048, parallelSlots: 1, memoryBytes: 1 << 30)
        let configuration = NodeConfiguration().with {
            $0.dataDirectory = directory
            $0.limits = limits
        }
        var settings = PoolSettings(memoryBytes: memory, threads: 1, rpcServerPath: rpcServer)
        settings.startTimeout = startTimeout
        return PoolWorker(
            settings: settings,
            node: me,
            configuration: configuration,
            sandbox: .off(limits: limits),
            store: nil,
            changes: ChangeSignal(),
            logger: Logger(label: "test")
        )
    }

    static func plan(head: NodeID = other, members: [NodeID] = [me], memory: UInt64 = 100 << 20, build: EngineBuild = .current) -> PoolPlan {
        PoolPlan(
            model: DefaultModel.id,
            sha256: DefaultModel.sha256,
            context: 2048,
            slots: 1,
            build: build,
            head: .init(node: head, layers: 15, memoryBytes: memory),
            members: members.map { .init(node: $0, layers: 15, memoryBytes: memory) }
        )
    }

    static func put(_ client: some TestClientProtocol, _ assignment: PoolAssignment) async throws -> (HTTPResponse.Status, String) {
        try await client.execute(
            uri: LinkProtocol.Path.pool(assignment.pool),
            method: .put,
            body: ByteBuffer(bytes: try JSONEncoder().encode(assignment))
        ) { ($0.status, String(buffer: $0.body)) }
    }

    static func application(_ worker: PoolWorker?) -> some ApplicationProtocol {
        let router = Router()
        PoolController(worker: worker).addRoutes(to: router)
        return Application(router: router)
    }

    @Test func refusesPlansThatDoNotFitThisNode() async throws {
        let pool = PoolID.random()
        let foreign = EngineBuild(llamaCpp: 1, rpcProtocol: "1.0.0", architecture: "x86_64", byteOrder: "little")
        let unpinned = Self.plan().with { $0.sha256 = SHA256Digest(hex: String(repeating: "e", count: 64))! }
        try await Self.application(Self.worker()).test(.router) { client in
            let cases: [(PoolPlan, HTTPResponse.Status, String)] = [
                (Self.plan(build: foreign), .conflict, "engine_build_mismatch"),
                (Self.plan(head: Self.other, members: [Self.third]), .forbidden, "not_in_plan"),
                (unpinned, .forbidden, "model_not_pinned"),
                (Self.plan(memory: 300 << 20), .conflict, "over_lent_memory"),
            ]
            for (plan, status, code) in cases {
                let (answer, body) = try await Self.put(client, PoolAssignment(pool: pool, epoch: 1, plan: plan))
                #expect(answer == status, "\(code): \(body)")
                #expect(body.contains(code), "\(body)")
            }
            // An assignment for another pool id than the path's, and nonsense, are refused too.
            let mismatch = try await client.execute(
                uri: LinkProtocol.Path.pool(.random()),
                method: .put,
                body: ByteBuffer(bytes: try JSONEncoder().encode(PoolAssignment(pool: pool, epoch: 1, plan: Self.plan())))
            ) { $0.status }
            #expect(mismatch == .badRequest)
            let bad = try await client.execute(uri: LinkProtocol.Path.poolPrefix + "..%2f..", method: .delete) { $0.status }
            #expect(bad == .badRequest)
        }
    }

    /// The refusal a byte-stream route on the link answers with, or `nil` when it would open a connection.
    static func refusal(_ path: String, pools: PoolWorker?) async throws -> APIFailure? {
        let open = try #require(
            LinkByteStreams(services: [:], pools: pools).route(HTTPRequest(method: .post, scheme: nil, authority: nil, path: path))
        )
        switch await open(MultiThreadedEventLoopGroup.singleton.next()) {
        case .success(let connection):
            connection.close()
            return nil
        case .failure(let failure):
            return failure
        }
    }

    @Test func streamsAreOnlyForWorkTheNodeRuns() async throws {
        let pool = PoolID.random()
        let worker = Self.worker()
        #expect(try await Self.refusal(LinkProtocol.Path.poolRPC(pool), pools: worker)?.code == "not_a_member")
        #expect(try await Self.refusal(LinkProtocol.Path.poolPeer(pool, index: 0), pools: worker)?.code == "not_a_head")
        #expect(try await Self.refusal(LinkProtocol.Path.poolPeer(pool, index: 0) + "x", pools: worker)?.code == "not_a_head")
        #expect(try await Self.refusal(LinkProtocol.Path.poolPrefix + "..%2f../rpc", pools: worker)?.code == "invalid_pool")
        // A node that lends nothing answers every pool stream with the same refusal, and the PUT and DELETE routes too.
        #expect(try await Self.refusal(LinkProtocol.Path.poolRPC(pool), pools: nil)?.code == "pools_off")
        #expect(try await Self.refusal(LinkProtocol.Path.poolPeer(pool, index: 0), pools: nil)?.code == "pools_off")
        try await Self.application(nil).test(.router) { client in
            for method in [HTTPRequest.Method.put, .delete] {
                let body = try await client.execute(uri: LinkProtocol.Path.pool(pool), method: method) { String(buffer: $0.body) }
                #expect(body.contains("pools_off"))
            }
        }
        // Only POSTs to those paths are byte streams; anything else is the router's.
        let streams = LinkByteStreams(services: ["echo": 1], pools: worker)
        for (method, path) in [
            (HTTPRequest.Method.get, LinkProtocol.Path.poolRPC(pool)), (.post, LinkProtocol.Path.pool(pool)),
            (.post, LinkProtocol.Path.poolRPC(pool) + "/more"), (.post, "/v1/chat/completions"), (.post, ""),
        ] {
            #expect(streams.route(HTTPRequest(method: method, scheme: nil, authority: nil, path: path)) == nil, "\(method) \(path)")
        }
    }

    /// A real rpc-server: started for epoch 2, reachable through the route while it runs, never replaced by an older
    /// plan nor stopped by an older plan's DELETE, gone after its own.
    @Test func runsAMembersRPCServerOnTheGatewaysWord() async throws {
        let rpcServer = ((try TestEnvironment.llamaServer() as NSString).deletingLastPathComponent as NSString).appendingPathComponent(
            "ggml-rpc-server"
        )
        let directory = try TestEnvironment.temporaryDirectory("pool-member")
        let worker = Self.worker(rpcServer: rpcServer, directory: directory)
        let pool = PoolID.random()
        try await Self.application(worker).test(.router) { client in
            let (started, body) = try await Self.put(client, PoolAssignment(pool: pool, epoch: 2, plan: Self.plan()))
            #expect(started == .accepted, "\(body)")
            let deadline = ContinuousClock.now + .seconds(30)
            while worker.memberPort(of: pool) == nil, ContinuousClock.now < deadline {
                #expect(worker.statuses.first?.state != .failed, "\(worker.statuses)")
                try await Task.sleep(for: .milliseconds(50))
            }
            let port = try #require(worker.memberPort(of: pool))
            #expect(worker.statuses == [PoolWorkStatus(pool: pool, epoch: 2, role: .member, state: .ready)])
            let pid = try #require(childProcesses(of: getpid(), named: "ggml-rpc-server").first)
            #expect(listeningAddresses(of: pid) == ["127.0.0.1:\(port)"])
            #expect(commandLineValue(of: pid, flag: "-H") == "127.0.0.1")
            // The same assignment again changes nothing; an older one is refused.
            #expect(try await Self.put(client, PoolAssignment(pool: pool, epoch: 2, plan: Self.plan())).0 == .accepted)
            let stale = try await Self.put(client, PoolAssignment(pool: pool, epoch: 1, plan: Self.plan()))
            #expect(stale.0 == .conflict && stale.1.contains("stale_plan"))
            // A second pool's share would pass what the node lends.
            let greedy = try await Self.put(client, PoolAssignment(pool: .random(), epoch: 1, plan: Self.plan(memory: 150 << 20)))
            #expect(greedy.0 == .conflict && greedy.1.contains("over_lent_memory"))
            // A stop for an older epoch (sent before this plan, arriving after it) leaves this plan's work running;
            // an epoch that is not a number is refused; the stop for this epoch ends it.
            func delete(epoch: String) async throws -> (HTTPResponse.Status, String) {
                try await client.execute(
                    uri: LinkProtocol.Path.pool(pool),
                    method: .delete,
                    headers: [HTTPField.Name(LinkProtocol.Header.poolEpoch)!: epoch]
                ) { ($0.status, String(buffer: $0.body)) }
            }
            #expect(try await delete(epoch: "1").0 == .noContent)
            #expect(worker.memberPort(of: pool) == port && processIsAlive(pid))
            let malformed = try await delete(epoch: "soon")
            #expect(malformed.0 == .badRequest && malformed.1.contains("invalid_epoch"))
            #expect(processIsAlive(pid))
            #expect(try await delete(epoch: "2").0 == .noContent)
            #expect(worker.memberPort(of: pool) == nil && worker.statuses.isEmpty)
            #expect(!processIsAlive(pid))
            // Without an epoch a stop drops whatever runs.
            #expect(try await Self.put(client, PoolAssignment(pool: pool, epoch: 3, plan: Self.plan())).0 == .accepted)
            #expect(try await client.execute(uri: LinkProtocol.Path.pool(pool), method: .delete) { $0.status } == .noContent)
            #expect(worker.statuses.isEmpty)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// An rpc-server that exits at once, or never listens, is reported failed with why; it is never left running.
    @Test func aMemberThatCannotServeIsReportedFailed() async throws {
        let directory = try TestEnvironment.temporaryDirectory("pool-member-fail")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let crashing = directory + "/crashing-rpc-server"
        let silent = directory + "/silent-rpc-server"
        try "#!/bin/sh\necho 'bind failed: address in use'\nexit 0\n".write(toFile: crashing, atomically: true, encoding: .utf8)
        // A copy of sleep under a name no other test's process has, to look for it afterwards.
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: directory + "/pool-silent")
        try "#!/bin/sh\nexec \(directory)/pool-silent 120\n".write(toFile: silent, atomically: true, encoding: .utf8)
        for path in [crashing, silent] { chmod(path, 0o755) }
        for (path, words) in [(crashing, "bind failed"), (silent, "did not listen")] {
            let worker = Self.worker(rpcServer: path, directory: directory, startTimeout: .seconds(1))
            let pool = PoolID.random()
            try await worker.assign(PoolAssignment(pool: pool, epoch: 1, plan: Self.plan()))
            let deadline = ContinuousClock.now + .seconds(20)
            while worker.statuses.first?.state != .failed, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            let status = try #require(worker.statuses.first)
            #expect(status.state == .failed && status.detail?.contains(words) == true, "\(status)")
            #expect(worker.memberPort(of: pool) == nil)
            await worker.drop(pool)
            #expect(childProcesses(of: getpid(), named: "pool-silent").isEmpty, "the silent rpc-server was left running")
        }
    }
}

extension PoolPlan {
    func with(_ change: (inout PoolPlan) -> Void) -> PoolPlan {
        var copy = self
        change(&copy)
        return copy
    }
}

/// Which engine build a node reports: what its `llama-server` says, not what Hearth pins.
struct EngineBuildProbeTests {
    @Test func readsTheBuildNumberFromTheVersionText() {
        #expect(EngineBuild.buildNumber(in: "version: 0.6.0-dev (build 11434, commit 515e85511)\nbuilt with GNU 12.2.0") == 11434)
        #expect(EngineBuild.buildNumber(in: "version: 1 (abc)") == nil)
        #expect(EngineBuild.buildNumber(in: "") == nil)
    }

    @Test func thePinnedEngineIsThePinnedBuildAndAnyOtherIsNot() async throws {
        #expect(await EngineBuild.probe(llamaServer: try TestEnvironment.llamaServer()) == .current)

        let directory = try TestEnvironment.temporaryDirectory("engine-build")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func script(_ name: String, _ body: String) throws -> String {
            let path = directory + "/" + name
            try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
            return path
        }
        let other = try #require(await EngineBuild.probe(llamaServer: try script("other", "echo 'version: 9.9 (build 9000, commit f00)' >&2")))
        #expect(other.llamaCpp == 9000 && other.rpcProtocol == "unknown" && other != .current)
        // Says nothing or hangs: a build of its own (0), never the pinned one. Not there: no build to say.
        #expect(await EngineBuild.probe(llamaServer: try script("mute", "exit 0"))?.llamaCpp == 0)
        #expect(await EngineBuild.probe(llamaServer: try script("hangs", "exec sleep 600"), timeout: .seconds(1))?.llamaCpp == 0)
        #expect(await EngineBuild.probe(llamaServer: directory + "/missing") == nil)
        #expect(await EngineBuild.probe(llamaServer: "no-such-engine-on-path") == nil)
    }
}
