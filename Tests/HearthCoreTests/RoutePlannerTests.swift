import Testing

@testable import HearthCore

struct RoutePlannerTests {
    static let model = ModelID("smollm2-135m-instruct:q4_1")!
    static let digest = SHA256Digest(hex: String(repeating: "ab", count: 32))!

    func node(
        _ byte: Character,
        state: EngineState = .ready,
        slots: Int = 2,
        inFlight: Int = 0,
        latency: Double? = nil,
        aliases: [ModelID] = [],
        draining: Bool = false
    ) -> RoutableNode {
        RoutableNode(
            id: NodeID(String(repeating: byte, count: 64))!,
            models: [ServedModel(id: Self.model, aliases: aliases, sha256: Self.digest, contextLength: 2048, sizeBytes: 1, state: state)],
            parallelSlots: slots,
            inFlight: inFlight,
            recentLatency: latency,
            draining: draining
        )
    }

    @Test func unknownWhenNoNodeAnnouncedTheName() {
        #expect(RoutePlanner.plan(model: ModelID("other")!, nodes: [node("a")]) == .unknownModel)
    }

    @Test func neverMatchesByPrefixOrSubstring() {
        #expect(RoutePlanner.plan(model: ModelID("smollm2")!, nodes: [node("a")]) == .unknownModel)
        #expect(RoutePlanner.plan(model: ModelID("smollm2-135m-instruct")!, nodes: [node("a")]) == .unknownModel)
    }

    @Test func matchesDeclaredAliasesExactlyAndRoutesUnderTheCanonicalID() {
        let plan = RoutePlanner.plan(model: ModelID("smol")!, nodes: [node("a", aliases: [ModelID("smol")!])])
        #expect(plan == .candidates([NodeID(String(repeating: "a", count: 64))!], canonical: Self.model))
    }

    @Test func knownButNotReadyWhenLoadingFailedOrDraining() {
        #expect(RoutePlanner.plan(model: Self.model, nodes: [node("a", state: .loading), node("b", state: .failed)]) == .noReadyNode)
        #expect(RoutePlanner.plan(model: Self.model, nodes: [node("a", draining: true)]) == .noReadyNode)
        // A failed announcement beside one that could still become ready is only "not ready yet".
        #expect(RoutePlanner.plan(model: Self.model, nodes: [node("a", state: .failed), node("b", draining: true)]) == .noReadyNode)
    }

    @Test func failedEverywhereWhenEveryAnnouncementIsFailed() {
        #expect(RoutePlanner.plan(model: Self.model, nodes: [node("a", state: .failed)]) == .failedEverywhere)
        #expect(RoutePlanner.plan(model: Self.model, nodes: [node("a", state: .failed), node("b", state: .failed)]) == .failedEverywhere)
        // Nodes that do not offer the model at all do not count either way.
        #expect(RoutePlanner.plan(model: ModelID("other")!, nodes: [node("a", state: .failed)]) == .unknownModel)
    }

    @Test func ordersByTheScoreOfFreeSlotsAndLatency() {
        let nodes = [
            node("a", slots: 2, inFlight: 2),
            node("b", slots: 4, inFlight: 1, latency: 0.5),
            node("c", slots: 4, inFlight: 1, latency: 0.1),
            node("d", slots: 1, inFlight: 0),
            node("e", slots: 4, inFlight: 9),
        ]
        guard case .candidates(let order, _) = RoutePlanner.plan(model: Self.model, nodes: nodes) else {
            Issue.record("expected candidates")
            return
        }
        // d: idle (1.0); c: 4/5 free, 0.1 s (0.76); b: 4/5, 0.5 s (0.64); a: full (1/3); e: over-full (1/5).
        #expect(order.map { $0.rawValue.first! } == ["d", "c", "b", "a", "e"])
    }

    @Test func theScoreIsTheProductOfItsParts() {
        var busy = node("a", slots: 3, inFlight: 1, latency: 2)
        busy.interTokenLatency = 0.25
        busy.successRate = 0.8
        busy.refusedReceipts = 1
        busy.spotCheckReputation = 0.5
        let score = RoutingScore(busy)
        #expect(score == RoutingScore(capacity: 0.75, latency: 0.5, pace: 0.5, reliability: 0.8 * 0.8, reputation: 0.25))
        #expect(abs(score.value - 0.75 * 0.5 * 0.5 * 0.64 * 0.25) < 1e-12)
        // Absurd reports cannot push a part out of (0, 1].
        var absurd = node("b", slots: -5, inFlight: -9, latency: -1)
        absurd.successRate = 7
        absurd.refusedReceipts = -3
        let parts = RoutingScore(absurd)
        for part in [parts.capacity, parts.latency, parts.pace, parts.reliability, parts.reputation] { #expect(part > 0 && part <= 1) }
    }

    @Test func aNodeThatFailsOftenComesAfterOneThatDoesNot() {
        var flaky = node("a", slots: 8)
        flaky.successRate = 0.5
        let steady = node("b", slots: 2, inFlight: 1)
        #expect(RoutePlanner.plan(model: Self.model, nodes: [flaky, steady]) == .candidates([steady.id, flaky.id], canonical: Self.model))
    }

    @Test func ejectedNodesAreLeftOutWhileAnotherCanServe() {
        var ejected = node("a", slots: 8)
        ejected.ejected = true
        let other = node("b", slots: 1, inFlight: 3)
        #expect(RoutePlanner.plan(model: Self.model, nodes: [ejected, other]) == .candidates([other.id], canonical: Self.model))
        #expect(RoutePlanner.plan(model: Self.model, nodes: [ejected]) == .candidates([ejected.id], canonical: Self.model))
    }

    @Test func nodesWithRefusedReceiptsComeLastButStillServe() {
        let model = ModelID("m:q8_0")!
        let served = [ServedModel(id: model, sha256: DefaultModel.sha256, contextLength: 512, sizeBytes: 1, state: .ready)]
        let suspect = RoutableNode(
            id: NodeID(String(repeating: "1", count: 64))!,
            models: served,
            parallelSlots: 8,
            inFlight: 0,
            recentLatency: 0.001,
            draining: false,
            refusedReceipts: 2
        )
        let honest = RoutableNode(
            id: NodeID(String(repeating: "2", count: 64))!,
            models: served,
            parallelSlots: 1,
            inFlight: 1,
            recentLatency: 0.5,
            draining: false
        )
        #expect(RoutePlanner.plan(model: model, nodes: [suspect, honest]) == .candidates([honest.id, suspect.id], canonical: model))
        #expect(RoutePlanner.plan(model: model, nodes: [suspect]) == .candidates([suspect.id], canonical: model))
    }
}

struct CatalogRoutingTests {
    static func node(_ byte: Character, _ models: [(String, EngineState)]) -> RoutableNode {
        RoutableNode(
            id: NodeID(String(repeating: byte, count: 64))!,
            models: models.map { ServedModel(id: ModelID($0.0)!, sha256: RoutePlannerTests.digest, contextLength: 2048, sizeBytes: 1, state: $0.1) },
            parallelSlots: 2,
            inFlight: 0,
            recentLatency: nil,
            draining: false
        )
    }

    static let a = NodeID(String(repeating: "a", count: 64))!
    static let b = NodeID(String(repeating: "b", count: 64))!

    @Test func nodesWithTheModelLoadedComeBeforeThoseInStandby() {
        let nodes = [Self.node("a", [("m:q8_0", .standby)]), Self.node("b", [("m:q8_0", .ready)])]
        #expect(RoutePlanner.plan(model: ModelID("m:q8_0")!, nodes: nodes) == .candidates([Self.b, Self.a], canonical: ModelID("m:q8_0")!))
        // Standby alone is servable: the node loads on demand. Loading alone is not.
        #expect(RoutePlanner.plan(model: ModelID("m:q8_0")!, nodes: [nodes[0]]) == .candidates([Self.a], canonical: ModelID("m:q8_0")!))
        #expect(RoutePlanner.plan(model: ModelID("m:q8_0")!, nodes: [Self.node("a", [("m:q8_0", .loading)])]) == .noReadyNode)
    }

    @Test func aNameWithoutQuantizationRoutesToTheCatalogsChoice() throws {
        let catalog = try Catalog(entries: [
            catalogEntry("m:q8_0", quantization: "Q8_0", sizeBytes: 8 << 30),
            catalogEntry("m:q4_k_m", quantization: "Q4_K_M", sizeBytes: 4 << 30, approved: true),
        ])
        let both = [Self.node("a", [("m:q4_k_m", .ready)]), Self.node("b", [("m:q8_0", .ready)])]
        #expect(RoutePlanner.plan(model: ModelID("m")!, nodes: both, catalog: catalog) == .candidates([Self.b], canonical: ModelID("m:q8_0")!))
        // Only the approved lower quantization is served: it stands in for the Q8_0.
        #expect(
            RoutePlanner.plan(model: ModelID("m")!, nodes: [both[0]], catalog: catalog) == .candidates([Self.a], canonical: ModelID("m:q4_k_m")!)
        )
        #expect(RoutePlanner.plan(model: ModelID("m")!, nodes: [], catalog: catalog) == .unknownModel)
        // An exact name is never rewritten.
        #expect(
            RoutePlanner.plan(model: ModelID("m:q4_k_m")!, nodes: both, catalog: catalog) == .candidates([Self.a], canonical: ModelID("m:q4_k_m")!)
        )
    }
}

struct NodeReportBoundsTests {
    static func report(slots: Int = 2, inFlight: Int = 0, name: String = "n", models: [ServedModel] = []) -> NodeReport {
        NodeReport(
            name: name,
            hardware: HardwareProfile(cpuCores: 4, memoryTotalBytes: 8 << 30, memoryAvailableBytes: 4 << 30, diskFreeBytes: 1 << 30, gpus: []),
            limits: NodeLimits(threads: 2, contextSize: 2048, parallelSlots: slots),
            models: models,
            inFlight: inFlight,
            draining: false,
            version: "1"
        )
    }

    @Test func aReportWithinBoundsIsAccepted() throws {
        try Self.report().validate()
    }

    /// A hostile node's numbers would otherwise reach the router's arithmetic (`slots - inFlight` overflows for
    /// `Int.min`) and the gateway's pages.
    @Test func outOfRangeNumbersAndHugeTextAreRefusedNamingTheField() {
        let cases: [(NodeReport, String)] = [
            (Self.report(slots: .min), "limits.parallelSlots"),
            (Self.report(slots: 0), "limits.parallelSlots"),
            (Self.report(inFlight: -1), "inFlight"),
            (Self.report(name: String(repeating: "x", count: 10_000)), "name"),
        ]
        for (report, field) in cases {
            #expect(throws: ReportError.self) { try report.validate() }
            #expect((try? report.validate()) == nil)
            do { try report.validate() } catch { #expect(error.field == field) }
        }
        let model = ServedModel(
            id: ModelID("m")!,
            sha256: SHA256Digest(hex: String(repeating: "0", count: 64))!,
            contextLength: 1,
            sizeBytes: 1,
            state: .ready
        )
        let tooMany = Self.report(models: Array(repeating: model, count: NodeReport.Bound.models + 1))
        #expect(throws: ReportError(field: "models", problem: "lists more than \(NodeReport.Bound.models)")) { try tooMany.validate() }
    }
}

struct DegradationTests {
    @Test func aSmallerModelOfTheSameFamilyLargestFirst() {
        let catalog = Catalog.builtin
        #expect(
            Degradation.alternatives(for: ModelID("smollm2-360m-instruct:q8_0")!, in: catalog).map(\.id.rawValue) == ["smollm2-135m-instruct:q4_1"]
        )
        #expect(Degradation.alternatives(for: ModelID("smollm2-360m-instruct")!, in: catalog).map(\.id.rawValue) == ["smollm2-135m-instruct:q4_1"])
        #expect(Degradation.alternatives(for: DefaultModel.id, in: catalog).isEmpty, "nothing is smaller than the smallest")
        #expect(Degradation.alternatives(for: ModelID("no-such-model")!, in: catalog).isEmpty)
        let qwen = catalog.entries.filter { $0.family == "qwen2.5" }
        let largest = qwen.max { $0.parameters < $1.parameters }!
        let alternatives = Degradation.alternatives(for: largest.id, in: catalog)
        #expect(!alternatives.isEmpty && alternatives.allSatisfy { $0.family == "qwen2.5" && $0.parameters < largest.parameters })
        #expect(alternatives.map(\.parameters) == alternatives.map(\.parameters).sorted(by: >))
    }
}
