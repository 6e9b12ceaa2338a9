import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway

/// Who may control pools, and what outlives a restart.
struct PoolRoutesTests {
    @Test func onlyOperatorsCreateOrStopPools() async throws {
        let named = IdentityKey.generate()
        let directory = try TestEnvironment.temporaryDirectory("pool-routes")
        let (gateway, _) = try await makeGateway([:]) {
            $0.operators = [named.nodeID]
            $0.dataDirectory = directory
        }
        let own = try GatewayIdentity.loadOrCreate(in: directory)
        try await gateway.application.test(.router) { client in
            let create = try json(["model": .string(DefaultModel.id.rawValue)])
            let anonymous = try await client.execute(uri: "/api/pools", method: .post, body: create) { ($0.status, String(buffer: $0.body)) }
            #expect(anonymous.0 == .unauthorized && anonymous.1.contains("login_required"))
            let stranger = try await loginToken(client, IdentityKey.generate())
            for (method, uri) in [(HTTPRequest.Method.post, "/api/pools"), (.delete, "/api/pools/p-0123456789ab")] {
                let refused = try await client.execute(uri: uri, method: method, headers: [.authorization: "Bearer \(stranger)"], body: create) {
                    ($0.status, String(buffer: $0.body))
                }
                #expect(refused.0 == .forbidden && refused.1.contains("not_an_operator"), "\(method) \(uri): \(refused.1)")
            }
            // The gateway's own key and a named operator pass; this gateway runs no mesh, so it has no pools to make.
            for key in [own, named] {
                let token = try await loginToken(client, key)
                let answer = try await client.execute(uri: "/api/pools", method: .post, headers: [.authorization: "Bearer \(token)"], body: create) {
                    ($0.status, String(buffer: $0.body))
                }
                #expect(answer.0 == .notImplemented && answer.1.contains("pools_unavailable"), "\(answer.1)")
            }
            // Anyone may list them.
            let list = try await client.execute(uri: "/api/pools", method: .get) { decode($0.body) }
            #expect(list["pools"]?.arrayValue?.isEmpty == true)
        }
    }

    @Test func aPoolsDefinitionOutlivesTheGatewayAndAStopForgetsIt() async throws {
        let directory = try TestEnvironment.temporaryDirectory("pools-db")
        let database = try GatewayDatabase.open(directory: directory)
        try await database.migrate()
        func reconciler() -> PoolReconciler {
            PoolReconciler(
                registry: NodeRegistry(ttl: .seconds(60)),
                links: NodeLinks(),
                catalog: .builtin,
                policy: PoolPolicy(),
                metrics: GatewayMetrics(),
                database: database,
                logger: Logger(label: "test")
            )
        }
        let first = reconciler()
        let only = [NodeID(String(repeating: "d", count: 64))!]
        let id = try await first.create(model: DefaultModel.id, nodes: only)
        await #expect(throws: APIFailure.self) { try await first.create(model: ModelID("no-such-model:q8_0")!) }

        // A definition whose model the catalog no longer pins is dropped on restore, the others kept.
        let unpinned = PoolRecord(id: PoolID.random().rawValue, model: "no-such-model:q8_0", nodes: nil, automatic: true, createdAt: Date())
        try await database.savePool(unpinned)

        let second = reconciler()
        await second.restore()
        #expect(second.views().count == 1)
        #expect(try await database.pools().map(\.id) == [id.rawValue])
        let restored = try #require(second.views().first)
        #expect(restored.id == id && restored.model == DefaultModel.id && restored.state == .requested && !restored.automatic)
        #expect(second.pools.withLock { $0[id]?.only } == only)
        #expect(await second.stop(id))
        #expect(!(await second.stop(.random())))

        let third = reconciler()
        await third.restore()
        #expect(third.views().isEmpty)
    }

    /// Requests that arrive together for a model no node serves alone create one automatic pool, and only when the
    /// lenders could hold it.
    @Test func concurrentDemandCreatesOnePool() async throws {
        let registry = NodeRegistry(ttl: .seconds(60))
        var policy = PoolPolicy()
        policy.automatic = true
        policy.context = 8192
        // A real database: storing the definition suspends, which is where two requests could both create one.
        let database = try GatewayDatabase.open(directory: try TestEnvironment.temporaryDirectory("pools-demand"))
        try await database.migrate()
        let reconciler = PoolReconciler(
            registry: registry,
            links: NodeLinks(),
            catalog: .builtin,
            policy: policy,
            metrics: GatewayMetrics(),
            database: database,
            logger: Logger(label: "test")
        )
        func lend(_ seed: UInt8) {
            var lender = announcement(NodeID(String(repeating: String(format: "%02x", seed), count: 32))!)
            lender.report.models = []
            lender.report.pool = PoolOffer(memoryBytes: 150 << 20, threads: 1, canHead: true)
            registry.upsert(lender)
        }
        lend(1)
        lend(2)
        // Two lenders cannot hold SmolLM2 at 8 Ki: no pool, and the client hears no "warming".
        #expect(await reconciler.demand(model: DefaultModel.id) == nil)
        lend(3)
        let answers = await withTaskGroup(of: PoolReconciler.Demand?.self) { group in
            for _ in 0..<20 { group.addTask { await reconciler.demand(model: DefaultModel.id) } }
            return await group.reduce(into: [PoolReconciler.Demand?]()) { $0.append($1) }
        }
        #expect(answers.allSatisfy { if case .warming = $0 { true } else { false } }, "\(answers)")
        #expect(reconciler.views().count == 1)
        #expect(reconciler.views().first?.automatic == true)
        // An unpinned or unknown model never gets one.
        #expect(await reconciler.demand(model: ModelID("no-such-model:q8_0")!) == nil)
    }

    /// An automatic pool stops once idle, and a request it serves keeps it however long that request runs: idle time
    /// starts when the last request is over, not when it was routed (a slow pool's long answer outlasts the timeout).
    @Test func aPoolServingARequestIsNotIdleHoweverLongItRuns() async throws {
        var policy = PoolPolicy()
        policy.automatic = true
        policy.idleTimeout = .zero
        let reconciler = PoolReconciler(
            registry: NodeRegistry(ttl: .seconds(60)),
            links: NodeLinks(),
            catalog: .builtin,
            policy: policy,
            metrics: GatewayMetrics(),
            logger: Logger(label: "test")
        )
        let id = try await reconciler.create(model: DefaultModel.id, automatic: true)
        // No node lends memory: the plan fails, and a failed automatic pool is stopped once idle too.
        await reconciler.step()
        #expect(reconciler.views().first?.state == .failed)
        reconciler.used(id)
        await reconciler.step()
        await reconciler.step()
        #expect(reconciler.views().map(\.id) == [id], "a pool serving a request was stopped as idle")
        reconciler.finished(id)
        await reconciler.step()
        #expect(reconciler.views().isEmpty)
    }

    /// Any caller may ask for any pinned model: automatic pools stop at `maxAutomatic`, counting those being created
    /// at the same moment; an operator's pool does not count, and a model with a pool is still served by it.
    @Test func automaticPoolsStopAtTheCap() async throws {
        let registry = NodeRegistry(ttl: .seconds(60))
        var policy = PoolPolicy()
        policy.automatic = true
        policy.context = 8192
        policy.maxAutomatic = 2
        // Three pinned models the same three lenders could each hold together.
        let smol = try #require(Catalog.builtin.resolve(DefaultModel.id))
        let twins = (1...3).map { index in
            var twin = smol
            twin.id = ModelID("twin-\(index):q4_1")!
            twin.sha256 = SHA256Digest(hex: String(repeating: "\(index)", count: 64))!
            return twin
        }
        let database = try GatewayDatabase.open(directory: try TestEnvironment.temporaryDirectory("pools-cap"))
        try await database.migrate()
        let reconciler = PoolReconciler(
            registry: registry,
            links: NodeLinks(),
            catalog: try Catalog(entries: [smol] + twins),
            policy: policy,
            metrics: GatewayMetrics(),
            database: database,
            logger: Logger(label: "test")
        )
        for seed: UInt8 in 1...3 {
            var lender = announcement(NodeID(String(repeating: String(format: "%02x", seed), count: 32))!)
            lender.report.models = []
            lender.report.pool = PoolOffer(memoryBytes: 150 << 20, threads: 1, canHead: true)
            registry.upsert(lender)
        }
        // An operator's pool first: it leaves both automatic places free.
        _ = try await reconciler.create(model: smol.id)
        // Three models asked for at once: two get pools, the third hears of the cap.
        let answers = await withTaskGroup(of: PoolReconciler.Demand?.self) { group in
            for twin in twins { group.addTask { await reconciler.demand(model: twin.id) } }
            return await group.reduce(into: [PoolReconciler.Demand?]()) { $0.append($1) }
        }
        #expect(answers.filter { $0 == .full(limit: 2) }.count == 1, "\(answers)")
        #expect(answers.filter { if case .warming = $0 { true } else { false } }.count == 2, "\(answers)")
        #expect(reconciler.views().filter(\.automatic).count == 2)
        #expect(reconciler.views().count == 3)
        // A model that has a pool is still answered by it at the cap.
        let served = try #require(reconciler.views().first { $0.automatic }?.model)
        if case .warming = await reconciler.demand(model: served) {} else { Issue.record("a pooled model was refused at the cap") }
    }
}
