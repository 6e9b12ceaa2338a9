import Foundation
import HearthTesting
import Hummingbird
import NIOCore
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway

/// A pool's assignments and stop go out in the background: nodes that do not answer them hold up neither the
/// gateway's other pools nor its next look at them, and a stop never overtakes an assignment still on its way.
/// Stand-in lenders over the real mesh (TLS, HTTP/2) in this process, whose `PUT` or `DELETE` of the first pool is
/// held until the test lets it go.
struct PoolStopTests {
    /// What the stand-ins saw of the first pool's stop.
    final class HeldStops: Sendable {
        let held = Atomic<Int>(0)
        let cancelled = Atomic<Int>(0)
        let epochs = Mutex<[String]>([])
        let release = ChangeSignal()
        let released = Atomic<Bool>(false)
    }

    /// A stand-in node that serves no model and lends 150 MiB to pools; the caller adds its pool routes.
    static func standInLender() throws -> Router<BasicRequestContext> {
        var report = InProcessMesh.report(model: ModelID("lender:q8_0")!)
        report.models = []
        report.pool = PoolOffer(memoryBytes: 150 << 20, threads: 1, canHead: true)
        return try InProcessMesh.standInRouter(report: report)
    }

    static func lender(_ stops: HeldStops, holding pool: @escaping @Sendable () -> PoolID?) throws -> Router<BasicRequestContext> {
        let router = try standInLender()
        router.put("/link/v1/pool/{pool}") { _, _ in Response(status: .accepted) }
        router.delete("/link/v1/pool/{pool}") { request, context in
            guard context.parameters.get("pool") == pool()?.rawValue else { return Response(status: .noContent) }
            stops.epochs.withLock { $0.append(request.headers[.init(LinkProtocol.Header.poolEpoch)!] ?? "none") }
            stops.held.add(1, ordering: .relaxed)
            await stops.release.wait(until: .now + .seconds(300)) { stops.released.load(ordering: .relaxed) }
            // The gateway gives up on a stop after its bound by resetting the stream: this task is cancelled then.
            if Task.isCancelled { stops.cancelled.add(1, ordering: .relaxed) }
            return Response(status: .noContent)
        }
        return router
    }

    @Test func aStopThatNodesHoldDoesNotHoldUpTheNextPool() async throws {
        let poolsAt8K: (inout GatewayConfiguration) -> Void = { $0.pools.context = 8192 }
        try await InProcessMesh.with(label: "pool-stop", configure: poolsAt8K) { mesh in
            let stops = HeldStops()
            let first = Mutex<PoolID?>(nil)
            for _ in 0..<3 { mesh.join(key: .generate(), router: try Self.lender(stops) { first.withLock { $0 } }) }
            _ = try await mesh.waitForNodes(3)
            let pools = try #require(mesh.gateway.pools)
            func planned(_ id: PoolID) -> Bool { pools.views().first { $0.id == id }?.members.isEmpty == false }

            // Named before it is created: its plan may go out before `create` returns.
            let a = PoolID.random()
            first.withLock { $0 = a }
            _ = try await pools.create(model: DefaultModel.id, id: a)
            _ = try await eventually("the first pool's plan", within: .seconds(60)) { planned(a) ? true : nil }
            #expect(await pools.stop(a))
            _ = try await eventually("the first pool's stop at its three nodes", within: .seconds(60)) {
                stops.held.load(ordering: .relaxed) == 3 ? true : nil
            }

            // While all three still hold the stop, the next pool is planned on the same nodes.
            let b = try await pools.create(model: DefaultModel.id)
            _ = try await eventually("the second pool's plan", within: .seconds(60)) { planned(b) ? true : nil }
            #expect(stops.cancelled.load(ordering: .relaxed) == 0, "the second pool waited for the first one's stop to be given up")
            #expect(stops.epochs.withLock { $0 } == ["1", "1", "1"], "a stop names the epoch it is for")
            #expect(pools.views().first { $0.id == a }?.state == .stopping)

            // Once the nodes answer, the first pool is gone.
            stops.released.store(true, ordering: .relaxed)
            stops.release.notify()
            _ = try await eventually("the first pool gone", within: .seconds(60)) { pools.views().contains { $0.id == a } ? nil : true }
            #expect(stops.cancelled.load(ordering: .relaxed) == 0)
        }
    }

    /// What the stand-ins saw of the first pool's assignments and stop, and of the other pool's assignments.
    final class HeldAssignments: Sendable {
        let held = Atomic<Int>(0)
        let others = Atomic<Int>(0)
        let stops = Atomic<Int>(0)
        let stopsWhileHeld = Atomic<Int>(0)
        let release = ChangeSignal()
        let released = Atomic<Bool>(false)
    }

    static func lender(_ assignments: HeldAssignments, holding pool: @escaping @Sendable () -> PoolID?) throws -> Router<BasicRequestContext> {
        let router = try standInLender()
        router.put("/link/v1/pool/{pool}") { _, context in
            guard context.parameters.get("pool") == pool()?.rawValue else {
                assignments.others.add(1, ordering: .relaxed)
                return Response(status: .accepted)
            }
            assignments.held.add(1, ordering: .relaxed)
            await assignments.release.wait(until: .now + .seconds(300)) { assignments.released.load(ordering: .relaxed) }
            return Response(status: .accepted)
        }
        router.delete("/link/v1/pool/{pool}") { _, context in
            if context.parameters.get("pool") == pool()?.rawValue {
                if !assignments.released.load(ordering: .relaxed) { assignments.stopsWhileHeld.add(1, ordering: .relaxed) }
                assignments.stops.add(1, ordering: .relaxed)
            }
            return Response(status: .noContent)
        }
        return router
    }

    @Test func anAssignmentThatNodesHoldDoesNotHoldUpTheNextPoolAndItsStopWaitsForIt() async throws {
        let configure: (inout GatewayConfiguration) -> Void = {
            $0.pools.context = 8192
            // Longer than the test: only the release ends the held assignments.
            $0.pools.answerTimeout = .seconds(600)
        }
        try await InProcessMesh.with(label: "pool-assign", configure: configure) { mesh in
            let assignments = HeldAssignments()
            let first = Mutex<PoolID?>(nil)
            for _ in 0..<3 { mesh.join(key: .generate(), router: try Self.lender(assignments) { first.withLock { $0 } }) }
            _ = try await mesh.waitForNodes(3)
            let pools = try #require(mesh.gateway.pools)
            func members(_ id: PoolID) -> Int { pools.views().first { $0.id == id }?.members.filter { $0.role == "member" }.count ?? 0 }

            // Named before it is created: its assignments may go out before `create` returns, and one taken for
            // another pool's would not be held.
            let a = PoolID.random()
            first.withLock { $0 = a }
            _ = try await pools.create(model: DefaultModel.id, id: a)
            _ = try await eventually("the first pool's assignments held at its members", within: .seconds(60)) {
                members(a) > 0 && assignments.held.load(ordering: .relaxed) == members(a) ? true : nil
            }

            // While they are held, the next pool is planned and its members are told their parts.
            let b = try await pools.create(model: DefaultModel.id)
            _ = try await eventually("the second pool's assignments", within: .seconds(60)) {
                members(b) > 0 && assignments.others.load(ordering: .relaxed) == members(b) ? true : nil
            }
            #expect(pools.views().first { $0.id == a }?.state == .warming)

            // Both stopped: the second's stop goes at once; the first's waits for its assignments to be answered.
            #expect(await pools.stop(a))
            #expect(await pools.stop(b))
            _ = try await eventually("the second pool gone", within: .seconds(60)) { pools.views().contains { $0.id == b } ? nil : true }
            #expect(assignments.stops.load(ordering: .relaxed) == 0, "the first pool's stop overtook its assignments")
            #expect(pools.views().first { $0.id == a }?.state == .stopping)

            assignments.released.store(true, ordering: .relaxed)
            assignments.release.notify()
            _ = try await eventually("the first pool gone", within: .seconds(60)) { pools.views().contains { $0.id == a } ? nil : true }
            #expect(assignments.stopsWhileHeld.load(ordering: .relaxed) == 0)
            #expect(assignments.stops.load(ordering: .relaxed) == 3, "every node of the first pool's plan is told to stop")
        }
    }
}
