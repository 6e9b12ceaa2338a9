import Foundation
import HearthCore
import HearthMesh
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

extension PoolReconciler {
    func apply(_ action: PoolMachine.Action, to instance: Instance) async {
        let id = instance.id
        switch action {
        case .plan(let excluded):
            let result = PoolPlanner.plan(
                entry: instance.entry,
                context: policy.context,
                slots: policy.slots,
                candidates: registry.poolCandidates(),
                excluding: excluded,
                only: instance.only
            )
            switch result {
            case .success(let plan): await feed(id, .planned(plan))
            case .failure(let error): await feed(id, .planFailed(error))
            }
        case .startMember(let share, let epoch):
            guard let plan = current(id, epoch: epoch) else { return }
            assignInBackground(id) {
                if let problem = await self.assign(PoolAssignment(pool: id, epoch: epoch, plan: plan), to: share.node) {
                    self.enqueue(id, .memberLost(share.node, epoch: epoch, detail: problem))
                }
            }
        case .startHead(let plan, let epoch):
            assignInBackground(id) {
                if let problem = await self.assign(PoolAssignment(pool: id, epoch: epoch, plan: plan), to: plan.head.node) {
                    self.enqueue(id, .memberLost(plan.head.node, epoch: epoch, detail: problem))
                    return
                }
                // One relay per member: the head's engine reaches member i through peer stream i. Only while the plan
                // is still the pool's: a loss or a stop meanwhile took its relays already (under this lock).
                self.pools.withLock { pools in
                    guard pools[id]?.machine.epoch == epoch, pools[id]?.machine.plan != nil else { return }
                    pools[id]?.relays += plan.members.enumerated().map { index, member in
                        Task { await self.relay(pool: id, head: plan.head.node, index: index, member: member.node) }
                    }
                }
            }
        case .stopWork(let nodes):
            let (relays, assignments, epoch) = pools.withLock { pools -> ([Task<Void, Never>], [Task<Void, Never>], Int) in
                defer {
                    pools[id]?.relays = []
                    pools[id]?.assignments = []
                }
                return (pools[id]?.relays ?? [], pools[id]?.assignments ?? [], pools[id]?.machine.epoch ?? 0)
            }
            for relay in relays { relay.cancel() }
            // Each node gets a bounded time to drop its part, in the background: a frozen node must hold up neither
            // this reconciler's other pools nor its next look. The stop names the epoch it is for, so one that
            // reaches a node after the next plan's assignment leaves that assignment running.
            let headers: HTTPHeaders = [LinkProtocol.Header.poolEpoch: String(epoch)]
            let key = nextStop.add(1, ordering: .relaxed).newValue
            let bound = policy.answerTimeout
            // Made under the lock, so the task's own removal at its end always comes after it is recorded.
            stops.withLock { stops in
                stops[key] = (
                    id,
                    Task {
                        // An assignment still on its way must not overtake the stop and start work nobody stops: the
                        // stop goes once the node has answered it (or it was given up, each bounded).
                        for assignment in assignments { await assignment.value }
                        await withTaskGroup(of: Void.self) { group in
                            for node in nodes {
                                group.addTask {
                                    await Self.bounded(bound, late: ()) {
                                        _ = try? await self.links.call(.DELETE, LinkProtocol.Path.pool(id), on: node, headers: headers)
                                    }
                                }
                            }
                        }
                        // The pool's work is gone once its last stop under way is done (an earlier loss's may end later).
                        let last = self.stops.withLock { stops in
                            stops[key] = nil
                            return !stops.values.contains { $0.pool == id }
                        }
                        if last { self.enqueue(id, .workGone) }
                    }
                )
            }
        case .report(let incident):
            metrics.poolIncident(incident.kind)
            var metadata: Logger.Metadata = ["pool.id": "\(id)", "node.model": "\(instance.entry.id)", "pool.incident": "\(incident.kind.rawValue)"]
            if let node = incident.node { metadata["node.id"] = "\(node.short)" }
            logger.warning("pool incident: \(incident.detail)", metadata: metadata)
        }
    }

    /// Runs `work` for at most `limit` and returns what it returned; past it, `work` is cancelled and left behind,
    /// and the answer is `late`.
    static func bounded<T: Sendable>(
        _ limit: Duration,
        late: T,
        _ work: @escaping @Sendable () async -> T
    ) async -> T {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await work() }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? late
        }
    }

    /// Runs an assignment in the background, as stops are: a node that does not answer its part holds up neither
    /// the pool's other members nor the reconciler's other pools; its answer, or its loss, comes back as an event.
    /// Recorded under the lock, so that the pool's stop waits for it.
    private func assignInBackground(_ id: PoolID, _ work: @escaping @Sendable () async -> Void) {
        pools.withLock { pools in
            guard pools[id] != nil else { return }
            pools[id]?.assignments.append(Task { await work() })
        }
    }

    /// The plan of `id` if it is still at `epoch`.
    private func current(_ id: PoolID, epoch: Int) -> PoolPlan? {
        pools.withLock { pools in pools[id].flatMap { $0.machine.epoch == epoch ? $0.machine.plan : nil } }
    }

    /// Sends `assignment` to `node`, for at most the policy's `answerTimeout`; returns why it failed, or `nil`.
    private func assign(_ assignment: PoolAssignment, to node: NodeID) async -> String? {
        let late = "node \(node.short) did not answer its part within \(policy.answerTimeout)"
        return await Self.bounded(policy.answerTimeout, late: Optional(late)) {
            do {
                let body = ByteBuffer(bytes: try JSONEncoder().encode(assignment))
                let answer = try await self.links.call(.PUT, LinkProtocol.Path.pool(assignment.pool), on: node, json: body)
                return answer.status == 202 ? nil : "node \(node.short) refused its part (HTTP \(answer.status)): \(answer.body.prefix(300))"
            } catch {
                return Task.isCancelled ? late : "node \(node.short) could not be told its part: \(error)"
            }
        }
    }

    /// Joins the head's engine to one member's rpc-server, connection after connection: a peer stream is parked on
    /// the head until its engine connects, then a tunnel to the member's rpc-server is opened and the two are
    /// spliced. Only the gateway opens either stream, and only for the plan it made.
    private func relay(pool: PoolID, head: NodeID, index: Int, member: NodeID) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let peer = try await links.openStream(to: head, path: LinkProtocol.Path.poolPeer(pool, index: index))
                let rpc: LinkTunnel
                do {
                    rpc = try await links.openStream(to: member, path: LinkProtocol.Path.poolRPC(pool))
                } catch {
                    peer.close()
                    throw error
                }
                failures = 0
                // The splice runs on the event loops, beside the next parked stream; both streams end together.
                let counted = relayed
                peer.splice(with: rpc) { fromHead, bytes in counted.add(pool, toMember: fromHead, bytes: bytes) }
            } catch {
                if Task.isCancelled { return }
                failures += 1
                logger.debug("pool relay failed", metadata: ["pool.id": "\(pool)", "pool.member": "\(index)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(min(2_000, 100 * (1 << min(failures, 5)))))
            }
        }
    }
}
