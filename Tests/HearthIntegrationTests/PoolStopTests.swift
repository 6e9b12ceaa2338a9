import Foundation
import HearthCore
import HearthGateway
import HearthTesting
import Hummingbird
import NIOCore
import Synchronization
import Testing

/// A pool's stop goes out in the background: nodes that do not answer it hold up neither the gateway's other pools
/// nor its next look at them. Stand-in lenders over the real mesh (TLS, HTTP/2) in this process, whose `DELETE` of
/// the first pool is held until the test lets it go.
struct PoolStopTests {
    /// What the stand-ins saw of the first pool's stop.
    final class HeldStops: Sendable {
        let held = Atomic<Int>(0)
        let cancelled = Atomic<Int>(0)
        let epochs = Mutex<[String]>([])
        let release = ChangeSignal()
        let released = Atomic<Bool>(false)
    }

    static func lender(_ stops: HeldStops, holding pool: @escaping @Sendable () -> PoolID?) throws -> Router<BasicRequestContext> {
        var report = InProcessMesh.report(model: ModelID("lender:q8_0")!)
        report.models = []
        report.pool = PoolOffer(memoryBytes: 150 << 20, threads: 1, canHead: true)
        let router = try InProcessMesh.standInRouter(report: report)
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

            let a = try await pools.create(model: DefaultModel.id)
            first.withLock { $0 = a }
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
}
