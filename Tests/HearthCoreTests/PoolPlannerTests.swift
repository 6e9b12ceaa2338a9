import Foundation
import Testing

@testable import HearthCore

@Suite struct PoolPlannerTests {
    static let smol = Catalog.builtin[DefaultModel.id]!
    static let mib: UInt64 = 1 << 20

    static func id(_ seed: UInt8) -> NodeID { NodeID(String(repeating: String(format: "%02x", seed), count: 32))! }

    static func candidate(
        _ seed: UInt8,
        mib memory: UInt64,
        latency: Double? = 1,
        canHead: Bool = true,
        files: [SHA256Digest] = [],
        cached: [SHA256Digest] = [],
        build: EngineBuild = .current,
        draining: Bool = false
    ) -> PoolCandidate {
        PoolCandidate(
            id: id(seed),
            offer: PoolOffer(memoryBytes: memory * mib, threads: 1, build: build, canHead: canHead, files: files, cached: cached),
            latencyMilliseconds: latency,
            draining: draining
        )
    }

    static func plan(_ candidates: [PoolCandidate], excluding: Set<NodeID> = [], only: [NodeID]? = nil) -> Result<PoolPlan, PoolPlanError> {
        PoolPlanner.plan(entry: smol, context: 8192, slots: 1, candidates: candidates, excluding: excluding, only: only)
    }

    /// SmolLM2 at 8 Ki tokens needs about 330 MiB: three nodes lending 150 MiB each hold it, two do not.
    @Test func threeSmallNodesHoldWhatTwoCannot() throws {
        let two = Self.plan([Self.candidate(1, mib: 150), Self.candidate(2, mib: 150)])
        guard case .failure(.tooSmall(let layers, let needed, _)) = two else {
            Issue.record("expected tooSmall, got \(two)")
            return
        }
        #expect(layers < needed && needed == 30)
        let plan = try Self.plan([Self.candidate(1, mib: 150), Self.candidate(2, mib: 150), Self.candidate(3, mib: 150)]).get()
        #expect(plan.nodes.count == 3)
        #expect(plan.totalLayers == 30)
        #expect(plan.members.allSatisfy { $0.layers >= 1 })
        for share in [plan.head] + plan.members { #expect(share.memoryBytes <= 150 * Self.mib, "share \(share) over what the node lends") }
        #expect(plan.model == DefaultModel.id && plan.sha256 == DefaultModel.sha256 && plan.context == 8192)
    }

    @Test func layersFollowEachNodesRoom() throws {
        // 100 MiB lends room for 6 layers, 300 MiB for 27: the bigger node takes most of the model.
        let plan = try Self.plan([Self.candidate(1, mib: 300, canHead: false), Self.candidate(2, mib: 100)]).get()
        #expect(plan.head.node == Self.id(2))
        let big = try #require(plan.share(of: Self.id(1)))
        #expect(big.layers > 3 * plan.head.layers)
        #expect(plan.totalLayers == 30)
        #expect(big.memoryBytes <= 300 * Self.mib && plan.head.memoryBytes <= 100 * Self.mib)
    }

    @Test func prefersFewerNodesThenLowLatencyThenTheCache() throws {
        let far = Self.candidate(1, mib: 400, latency: 80)
        let near = [Self.candidate(2, mib: 150, latency: 2), Self.candidate(3, mib: 150, latency: 2), Self.candidate(4, mib: 150, latency: 2)]
        // Two nodes (one far) beat three near ones.
        #expect(try Self.plan([far] + near).get().nodes.count == 2)
        // Among pairs of equal size, the nearest pair wins.
        let pair = try Self.plan([
            Self.candidate(1, mib: 200, latency: 50), Self.candidate(2, mib: 200, latency: 3), Self.candidate(3, mib: 200, latency: 4),
        ]).get()
        #expect(Set(pair.nodes) == [Self.id(2), Self.id(3)])
        // At the same latency, nodes whose rpc cache holds the model win.
        let sha = DefaultModel.sha256
        let cached = try Self.plan([
            Self.candidate(1, mib: 200), Self.candidate(2, mib: 200, cached: [sha]), Self.candidate(3, mib: 200, cached: [sha]),
        ]).get()
        #expect(Set(cached.nodes) == [Self.id(2), Self.id(3)])
    }

    @Test func theHeadHoldsTheFileWhenItCan() throws {
        let plan = try Self.plan([
            Self.candidate(1, mib: 200), Self.candidate(2, mib: 200, files: [DefaultModel.sha256]), Self.candidate(3, mib: 200, canHead: false),
        ]).get()
        #expect(plan.head.node == Self.id(2))
        // No node can head: no plan, and the error says why.
        #expect(Self.plan([Self.candidate(1, mib: 200, canHead: false), Self.candidate(2, mib: 200, canHead: false)]) == .failure(.noHead))
    }

    @Test func neverMixesEngineBuilds() throws {
        let other = EngineBuild(llamaCpp: 9999, rpcProtocol: "6.0.0", architecture: "x86_64", byteOrder: "little")
        let big = EngineBuild(llamaCpp: EnginePins.llamaCppBuildNumber, rpcProtocol: EnginePins.rpcProtocol, architecture: "x86_64", byteOrder: "big")
        // Only together would they hold it.
        let mixed = Self.plan([Self.candidate(1, mib: 150), Self.candidate(2, mib: 150), Self.candidate(3, mib: 150, build: other)])
        guard case .failure(.tooSmall) = mixed else {
            Issue.record("expected tooSmall, got \(mixed)")
            return
        }
        let byteOrders = Self.plan([Self.candidate(1, mib: 150), Self.candidate(2, mib: 150), Self.candidate(3, mib: 150, build: big)])
        guard case .failure = byteOrders else {
            Issue.record("a big-endian node was pooled with little-endian ones")
            return
        }
        // With enough of one build, the plan is all of that build.
        let plan = try Self.plan([
            Self.candidate(1, mib: 200, build: other), Self.candidate(2, mib: 200), Self.candidate(3, mib: 200, build: other),
        ]).get()
        #expect(plan.build == other && Set(plan.nodes) == [Self.id(1), Self.id(3)])
    }

    @Test func skipsDrainingExcludedAndNonLendingNodes() throws {
        let nodes = [
            Self.candidate(1, mib: 400, draining: true), Self.candidate(2, mib: 400), Self.candidate(3, mib: 0), Self.candidate(4, mib: 200),
            Self.candidate(5, mib: 200),
        ]
        let plan = try Self.plan(nodes, excluding: [Self.id(2)]).get()
        #expect(Set(plan.nodes) == [Self.id(4), Self.id(5)])
        #expect(Self.plan([], excluding: []) == .failure(.noCandidates))
    }

    /// One node that could hold the model alone is no pool, and neither is one of each build: planned as none,
    /// without trapping (the range of pool sizes was 2...1 there, which crashed `hearth up` on a request that came while
    /// its one node's engine loaded).
    @Test func oneNodeOfABuildIsNoPoolHoweverLarge() {
        let other = EngineBuild(llamaCpp: 9999, rpcProtocol: "6.0.0", architecture: "x86_64", byteOrder: "little")
        for nodes in [[Self.candidate(1, mib: 4000)], [Self.candidate(1, mib: 4000), Self.candidate(2, mib: 4000, build: other)]] {
            guard case .failure(.tooSmall(_, _, let count)) = Self.plan(nodes) else {
                Issue.record("a pool of one was planned from \(nodes.count) node(s)")
                continue
            }
            #expect(count == 1)
        }
        // Two of one build, either able to hold it alone, still make a pool of two.
        #expect((try? Self.plan([Self.candidate(1, mib: 4000), Self.candidate(2, mib: 4000)]).get())?.nodes.count == 2)
    }

    @Test func anOperatorsListIsTakenAsIs() throws {
        let nodes = (1...4).map { Self.candidate($0, mib: 300) }
        let plan = try Self.plan(nodes, only: [Self.id(1), Self.id(3), Self.id(4)]).get()
        #expect(Set(plan.nodes) == [Self.id(1), Self.id(3), Self.id(4)])
        #expect(Self.plan(nodes, only: [Self.id(1), Self.id(9)]) == .failure(.unavailable(Self.id(9))))
        guard case .failure(.tooSmall) = Self.plan(nodes, only: [Self.id(2)]) else {
            Issue.record("a pool of one was planned")
            return
        }
    }

    @Test func splitsInProportionWithinCapacity() {
        #expect(PoolPlanner.split(layers: 30, capacities: [10, 10, 10]) == [10, 10, 10])
        #expect(PoolPlanner.split(layers: 30, capacities: [11, 12, 12]).map { $0.reduce(0, +) } == 30)
        #expect(PoolPlanner.split(layers: 30, capacities: [0, 27, 6]) == [0, 25, 5])
        #expect(PoolPlanner.split(layers: 30, capacities: [40, 1]) == [29, 1])
        #expect(PoolPlanner.split(layers: 30, capacities: [10, 10]) == nil)
        for capacities in [[3, 50, 50], [29, 1, 1], [100, 100, 100, 2]] {
            let split = PoolPlanner.split(layers: 30, capacities: capacities)!
            #expect(split.reduce(0, +) == 30)
            #expect(zip(split, capacities).allSatisfy { $0 <= $1 })
            #expect(split.dropFirst().allSatisfy { $0 >= 1 })
        }
    }

    @Test func theHeadsArgumentsMakeThePlannedSplit() throws {
        let plan = try Self.plan([Self.candidate(1, mib: 150), Self.candidate(2, mib: 150), Self.candidate(3, mib: 150)]).get()
        let arguments = plan.engineArguments(endpoints: ["127.0.0.1:4001", "127.0.0.1:4002"])
        let rpc = try #require(arguments.firstIndex(of: "--rpc"))
        let device = try #require(arguments.firstIndex(of: "--device"))
        #expect(rpc < device, "--rpc must come before --device")
        #expect(arguments[rpc + 1] == "127.0.0.1:4001,127.0.0.1:4002")
        #expect(arguments[device + 1] == "RPC0,RPC1")
        let split = try #require(arguments.firstIndex(of: "--tensor-split"))
        // llama.cpp's output layer takes the last slot after the blocks: each member's range is exactly its blocks.
        let weights = try arguments[split + 1].split(separator: ",").map { try #require(Int($0)) }
        #expect(weights == [plan.members[0].layers, plan.members[1].layers + 1])
        let layers = try #require(arguments.firstIndex(of: "--n-gpu-layers"))
        let offloaded = try #require(Int(arguments[layers + 1]))
        #expect(offloaded == 30 - plan.head.layers + 1)
        // llama.cpp's assignment (llama-model.cpp): block i goes to the CPU below `n_layer + 1 − ngl`, else to the
        // first device whose cumulative share exceeds (i − start) / ngl.
        let start = 30 + 1 - offloaded
        #expect(start == plan.head.layers)
        let cumulative = weights.indices.map { Float(weights[...$0].reduce(0, +)) / Float(weights.reduce(0, +)) }
        var perDevice = [0, 0]
        for block in start..<30 {
            perDevice[try #require(cumulative.firstIndex { $0 > Float(block - start) / Float(offloaded) })] += 1
        }
        #expect(perDevice == plan.members.map(\.layers))
        let cache = try #require(arguments.firstIndex(of: "--cache-ram"))
        #expect(arguments[cache + 1] == "0")
        // The output's weights are pinned to the head's CPU by an anchored pattern that no block tensor matches.
        let override = try #require(arguments.firstIndex(of: "--override-tensor"))
        let rules = arguments[override + 1].split(separator: ",")
        #expect(rules.allSatisfy { $0.hasSuffix("=CPU") })
        // llama.cpp searches each name with std::regex_search; Swift's `contains` is the same search.
        let patterns = try rules.map { try Regex(String($0.dropLast(4))) }
        for name in ["output.weight", "output_norm.weight", "output_norm.bias", "token_embd.weight"] {
            #expect(patterns.contains { name.contains($0) }, "\(name)")
        }
        for name in ["blk.3.attn_output.weight", "blk.0.ffn_norm.weight", "blk.1.attn_norm.weight", "blk.2.ffn_down.weight"] {
            #expect(!patterns.contains { name.contains($0) }, "\(name)")
        }
    }

    @Test func aReportsPoolOfferIsBounded() throws {
        let offer = PoolOffer(
            memoryBytes: 1 << 30,
            threads: 0,
            canHead: true,
            work: [PoolWorkStatus(pool: .random(), epoch: 1, role: .member, state: .ready)]
        )
        let report = NodeReport(
            name: "n",
            hardware: HardwareProfile(cpuCores: 2, memoryTotalBytes: 1, memoryAvailableBytes: 1, diskFreeBytes: 1, gpus: []),
            limits: NodeLimits(threads: 1, contextSize: 1, parallelSlots: 1),
            models: [],
            inFlight: 0,
            draining: false,
            version: "v",
            pool: offer
        )
        #expect(throws: ReportError.self) { try report.validate() }
        var fixed = report
        fixed.pool?.threads = 1
        try fixed.validate()
        #expect(fixed.revision.contains("/1/member=ready"))
        // A pool id is exactly p- and 12 lowercase hex digits.
        #expect(PoolID("p-0123456789ab") != nil)
        for bad in ["p-0123456789AB", "p-0123", "q-0123456789ab", "p-0123456789ab0", "p-../../etc/x"] { #expect(PoolID(bad) == nil) }
    }
}
