import Foundation
import Testing

@testable import HearthCore

@Suite struct ModelSizerTests {
    static let smol = ModelShape(layers: 30, kvHeads: 3, headDim: 64, embedding: 576)

    /// llama-server's own buffer lines for SmolLM2 (`-lv 4`): KV 45.00 MiB and compute 16.64 MiB at 2048 tokens in
    /// one slot; KV 180.00 MiB and compute 16.64 MiB at 8192 tokens over four slots.
    @Test func matchesTheBuffersLlamaServerReports() {
        let one = ModelSizer.estimate(weightsBytes: 0, shape: Self.smol, context: 2048, parallel: 1)
        #expect(one.kvCacheBytes == 45 << 20)
        #expect(abs(Double(one.computeBytes) / 1_048_576 - 16.64) < 0.1)
        let four = ModelSizer.estimate(weightsBytes: 0, shape: Self.smol, context: 2048, parallel: 4)
        #expect(four.kvCacheBytes == 180 << 20)
        #expect(four.computeBytes == one.computeBytes)
    }

    @Test func quantizedCacheShrinksOnlyTheCache() {
        let f16 = ModelSizer.estimate(weightsBytes: 1000, shape: Self.smol, context: 4096)
        let q8 = ModelSizer.estimate(weightsBytes: 1000, shape: Self.smol, context: 4096, cacheType: .q8_0)
        #expect(q8.kvCacheBytes == f16.kvCacheBytes * 17 / 32)
        #expect(q8.weightsBytes == 1000 && q8.computeBytes == f16.computeBytes)
        #expect(f16.totalBytes == 1000 + f16.kvCacheBytes + f16.computeBytes + ModelSizer.runtimeBytes)
    }

    @Test func readsTheShapeFromAHeader() throws {
        let header = try GGUFHeader(bytes: GGUFWriter.sample())
        // The sample states only block_count: not enough for a shape.
        #expect(ModelShape(header: header) == nil)
    }

    @Test func aHostileShapeSaturatesInsteadOfOverflowing() {
        let huge = ModelShape(layers: .max, kvHeads: .max, headDim: .max, embedding: .max)
        let estimate = ModelSizer.estimate(weightsBytes: .max, shape: huge, context: .max, parallel: .max)
        #expect(estimate.kvCacheBytes == .max && estimate.computeBytes == .max && estimate.totalBytes == .max)
        let entry = catalogEntry("huge:q8_0", sizeBytes: .max, shape: huge)
        let verdict = CapacityPlanner.plan(entry: entry, nodes: [CapacityPlannerTests.node(1, gib: 8)], context: .max, parallel: .max)
        #expect(verdict.status == .needsMoreNodes)
        #expect(verdict.missing?.memoryBytesEach == .max)
        let negative = ModelSizer.estimate(weightsBytes: 0, shape: ModelShape(layers: -1, kvHeads: 2, headDim: 2, embedding: -5), context: -3)
        #expect(negative.kvCacheBytes == 0 && negative.computeBytes == UInt64(ModelSizer.microBatch * 2))
    }

    @Test func formatsBinaryUnits() {
        #expect(UInt64(512).binaryBytes == "512 B")
        #expect(UInt64(1536 << 20).binaryBytes == "1.5 GiB")
        #expect(UInt64(8 << 30).binaryBytes == "8.0 GiB")
    }
}

@Suite struct CapacityPlannerTests {
    static func node(_ seed: UInt8, gib: Double) -> PoolNode {
        let id = NodeID(String(repeating: String(format: "%02x", seed), count: 32))!
        return PoolNode(id: id, name: "n\(seed)", memoryBytes: UInt64(gib * Double(1 << 30)))
    }

    /// 8 GiB of weights, 32 layers × 8 KV heads × 128: 128 KiB of f16 cache per token.
    static let model = catalogEntry("big:q8_0", sizeBytes: 8 << 30)

    @Test func aNodeWithEnoughMemoryRunsItAlone() {
        let nodes = [Self.node(1, gib: 4), Self.node(2, gib: 12), Self.node(3, gib: 16)]
        let verdict = CapacityPlanner.plan(entry: Self.model, nodes: nodes, context: 4096)
        #expect(verdict.status == .singleNode)
        #expect(verdict.nodes == [nodes[2].id, nodes[1].id])
        #expect(verdict.pool.isEmpty && verdict.missing == nil)
        #expect(verdict.summary == "runs on 2 nodes alone")
    }

    @Test func smallNodesTogetherRunItSplit() {
        let nodes = [Self.node(1, gib: 3), Self.node(2, gib: 4), Self.node(3, gib: 5), Self.node(4, gib: 0.01)]
        let verdict = CapacityPlanner.plan(entry: Self.model, nodes: nodes, context: 4096)
        #expect(verdict.status == .pool)
        // Largest first, and no more members than needed: 5 + 4 GiB cover 8.5 GiB plus each member's overhead.
        #expect(verdict.pool == [nodes[2].id, nodes[1].id])
        #expect(verdict.nodes.isEmpty)
    }

    @Test func saysWhatIsMissingWhenNothingCanRunIt() {
        let nodes = [Self.node(1, gib: 2), Self.node(2, gib: 2)]
        let verdict = CapacityPlanner.plan(entry: Self.model, nodes: nodes, context: 4096)
        #expect(verdict.status == .needsMoreNodes)
        let missing = try? #require(verdict.missing)
        // ~8.5 GiB shared, ~3.9 GiB covered: the rest needs 3 more nodes of the typical (2 GiB) size.
        #expect(missing?.count == 3)
        #expect(missing?.memoryBytesEach == 2 << 30)
        #expect(verdict.summary == "needs 3 more nodes with ≥ 2.0 GiB free")
    }

    @Test func anEmptyNetworkAsksForTypicalNodesAndStillListsLargeModels() {
        let catalog = Catalog.builtin
        let verdicts = CapacityPlanner.plan(catalog: catalog, nodes: [], context: 4096)
        #expect(verdicts.count == catalog.entries.count)
        #expect(verdicts.allSatisfy { $0.status == .needsMoreNodes })
        let large = try? #require(verdicts.first { $0.model.rawValue.hasPrefix("llama-3.3-70b") })
        #expect(large?.missing?.memoryBytesEach == 8 << 30)
        #expect((large?.missing?.count ?? 0) >= 6)
        #expect(large?.summary.contains("not pinned") == true)
    }

    @Test func thePoolLimitAsksForBiggerNodesInstead() {
        let nodes = (1...4).map { Self.node(UInt8($0), gib: 1) }
        let verdict = CapacityPlanner.plan(entry: Self.model, nodes: nodes, context: 4096, maxPoolSize: 4)
        #expect(verdict.status == .needsMoreNodes)
        // Four members at most: each must hold a quarter of ~8.5 GiB plus its own overhead.
        #expect(verdict.missing == CapacityVerdict.Missing(count: 4, memoryBytesEach: 3 << 30))
    }

    @Test func aDrainingNodeIsNotCapacity() {
        let report = NodeReport(
            name: "n",
            hardware: HardwareProfile(cpuCores: 2, memoryTotalBytes: 16 << 30, memoryAvailableBytes: 12 << 30, diskFreeBytes: 0, gpus: []),
            limits: NodeLimits(threads: 2, contextSize: 2048, parallelSlots: 1, memoryBytes: 6 << 30),
            models: [],
            inFlight: 0,
            draining: false,
            version: "t"
        )
        var announcement = NodeAnnouncement(nodeID: Self.node(1, gib: 0).id, report: report)
        #expect(PoolNode(announcement)?.memoryBytes == 6 << 30)
        announcement.limits.memoryBytes = nil
        #expect(PoolNode(announcement)?.memoryBytes == 12 << 30)
        announcement.draining = true
        #expect(PoolNode(announcement) == nil)
    }
}
