/// Where a pool is in its life.
package enum PoolState: String, Codable, Sendable, CaseIterable {
    /// Created; no plan yet.
    case requested
    /// Planned: members start their rpc-servers, then the head loads the model through them.
    case warming
    /// The head serves.
    case ready
    /// A member or the head was lost; everything was stopped and a new plan comes after a short wait.
    case degraded
    /// Being stopped on purpose (an operator, or idle).
    case stopping
    case stopped
    /// The network cannot hold the model now; planning is tried again with backoff.
    case failed
}

/// Something that went wrong in a pool, for the log, the metrics and `GET /api/pools`.
package struct PoolIncident: Codable, Sendable, Equatable {
    package enum Kind: String, Codable, Sendable, CaseIterable {
        case memberLost = "member_lost"
        case headCrashed = "head_crashed"
        case stall
        case warmingTimeout = "warming_timeout"
        case failed
    }

    package var kind: Kind
    package var node: NodeID?
    package var detail: String

    package init(kind: Kind, node: NodeID? = nil, detail: String) {
        self.kind = kind
        self.node = node
        self.detail = detail
    }
}

/// The pool's life as a pure state machine: events in, actions out, no I/O. The gateway's `PoolReconciler` feeds it
/// what the nodes report and what the planner says, and carries out what it returns.
///
/// llama.cpp's head dies when any RPC peer fails and hangs when one goes silent, so any loss ends the whole plan:
/// all its work is stopped, the lost node is kept out of the next plan for a while (longer each time it flaps: a
/// node that comes and goes cannot cause a replan storm), and a new plan is made after `replanDelay`. Failed plans
/// back off up to `maxBackoff`; a pool never gives up, so it recovers when capacity comes back.
package struct PoolMachine: Sendable {
    package struct Timing: Sendable {
        /// Wait after a loss before planning again, so reports of the other members' work settle.
        package var replanDelay: Duration = .seconds(1)
        /// First wait after a failed plan; doubles up to `maxBackoff`.
        package var backoff: Duration = .seconds(2)
        package var maxBackoff: Duration = .seconds(30)
        /// How long a lost node stays out of plans the first time; doubles for each further loss within `flapWindow`.
        package var quarantine: Duration = .seconds(10)
        package var maxQuarantine: Duration = .seconds(300)
        package var flapWindow: Duration = .seconds(600)
        /// Longest time from a plan to a serving head.
        package var warmingTimeout: Duration = .seconds(600)
        /// A busy slot without token progress for this long counts as a stall.
        package var stallAfter: Duration = .seconds(30)

        package init() {}
    }

    package enum Event: Sendable, Equatable {
        /// Time passed (the reconciler ticks every few seconds and on every registry change).
        case tick
        case planned(PoolPlan)
        case planFailed(PoolPlanError)
        /// A node reports its work for `epoch` ready.
        case memberReady(NodeID, epoch: Int)
        case headReady(epoch: Int)
        /// A node of the plan went away (link closed, draining) or its rpc-server failed.
        case memberLost(NodeID, epoch: Int, detail: String)
        case headFailed(epoch: Int, detail: String)
        /// The head reports a busy slot without progress for this long.
        case headStalled(epoch: Int, seconds: Int)
        case stop
        /// Every node of the plan has dropped its work.
        case workGone
    }

    package enum Action: Sendable, Equatable {
        /// Run the planner, leaving these nodes out; answer with `.planned` or `.planFailed`.
        case plan(excluding: Set<NodeID>)
        case startMember(PoolPlan.Share, epoch: Int)
        /// Start the head once every member is ready.
        case startHead(PoolPlan, epoch: Int)
        /// Tell these nodes to drop all work of this pool.
        case stopWork([NodeID])
        /// Log and count a real incident.
        case report(PoolIncident)
    }

    package private(set) var state: PoolState = .requested
    package private(set) var plan: PoolPlan?
    /// Bumped for every plan: work of an older plan is no longer this pool's.
    package private(set) var epoch = 0
    package private(set) var readyMembers: Set<NodeID> = []
    package private(set) var headStarted = false
    package private(set) var since: ContinuousClock.Instant
    package private(set) var lastIncident: PoolIncident?
    /// Why the pool is failed, or what it waits for.
    package private(set) var reason: String?
    package let timing: Timing

    private var nextPlanAt: ContinuousClock.Instant
    private var planPending = false
    private var failures = 0
    private var losses: [NodeID: (count: Int, last: ContinuousClock.Instant, until: ContinuousClock.Instant)] = [:]
    /// Nodes that may still hold work of an older plan.
    private var dirty: Set<NodeID> = []

    package init(now: ContinuousClock.Instant, timing: Timing = Timing()) {
        self.timing = timing
        since = now
        nextPlanAt = now
    }

    /// Nodes kept out of plans now.
    func quarantined(at now: ContinuousClock.Instant) -> Set<NodeID> {
        Set(losses.filter { $0.value.until > now }.keys)
    }

    /// How far a warming pool is, for a client told to come back: `2 of 3 members ready`.
    package var progress: String {
        switch state {
        case .requested: return "planning"
        case .warming:
            guard let plan else { return "planning" }
            if headStarted { return "\(plan.members.count) of \(plan.members.count) members ready, the head is loading the model" }
            return "\(readyMembers.count) of \(plan.members.count) members ready"
        case .degraded: return "recovering from a lost node, planning again"
        case .ready: return "ready"
        case .stopping, .stopped: return "stopped"
        case .failed: return reason ?? "failed"
        }
    }

    package mutating func handle(_ event: Event, now: ContinuousClock.Instant) -> [Action] {
        switch (state, event) {
        case (.stopping, .workGone):
            dirty = []
            return enter(.stopped, now: now)
        case (.stopping, _), (.stopped, _):
            return []
        case (_, .stop):
            let nodes = Array(dirty.union(plan?.nodes ?? []))
            plan = nil
            planPending = false
            if nodes.isEmpty { return enter(.stopped, now: now) }
            return enter(.stopping, now: now) + [.stopWork(nodes.sorted())]
        case (_, .workGone):
            dirty = []
            return []
        case (_, .tick):
            return tick(now: now)
        case (_, .planned(let plan)) where planPending:
            planPending = false
            failures = 0
            epoch += 1
            self.plan = plan
            readyMembers = []
            headStarted = false
            reason = nil
            dirty.formUnion(plan.nodes)
            var actions = enter(.warming, now: now)
            actions += plan.members.map { .startMember($0, epoch: epoch) }
            if plan.members.isEmpty { actions += startHead() }
            return actions
        case (_, .planFailed(let error)) where planPending:
            planPending = false
            failures += 1
            nextPlanAt = now + min(timing.backoff * (1 << min(failures - 1, 16)), timing.maxBackoff)
            let detail = error.description
            let repeated = state == .failed && reason == detail
            reason = detail
            // One line per new reason, not one per retry.
            if repeated { return [] }
            let incident = PoolIncident(kind: .failed, detail: detail)
            lastIncident = incident
            return enter(.failed, now: now) + [.report(incident)]
        case (.warming, .memberReady(let node, let epoch)) where epoch == self.epoch:
            guard let plan, plan.members.contains(where: { $0.node == node }) else { return [] }
            readyMembers.insert(node)
            return readyMembers.count == plan.members.count && !headStarted ? startHead() : []
        case (.warming, .headReady(let epoch)) where epoch == self.epoch && headStarted:
            return enter(.ready, now: now)
        case (.warming, .memberLost(let node, let epoch, let detail)), (.ready, .memberLost(let node, let epoch, let detail)):
            guard epoch == self.epoch, plan?.nodes.contains(node) == true else { return [] }
            quarantine(node, now: now)
            let kind: PoolIncident.Kind = node == plan?.head.node ? .headCrashed : .memberLost
            return lose(PoolIncident(kind: kind, node: node, detail: detail), now: now)
        case (.warming, .headFailed(let epoch, let detail)), (.ready, .headFailed(let epoch, let detail)):
            guard epoch == self.epoch, headStarted else { return [] }
            return lose(PoolIncident(kind: .headCrashed, node: plan?.head.node, detail: detail), now: now)
        case (.ready, .headStalled(let epoch, let seconds)):
            guard epoch == self.epoch, Duration.seconds(seconds) >= timing.stallAfter else { return [] }
            let detail = "a busy slot made no progress for \(seconds) s"
            return lose(PoolIncident(kind: .stall, node: plan?.head.node, detail: detail), now: now)
        default:
            return []
        }
    }

    private mutating func tick(now: ContinuousClock.Instant) -> [Action] {
        switch state {
        case .requested, .degraded, .failed:
            guard !planPending, now >= nextPlanAt else { return [] }
            planPending = true
            return [.plan(excluding: quarantined(at: now))]
        case .warming where now - since >= timing.warmingTimeout:
            return lose(PoolIncident(kind: .warmingTimeout, node: nil, detail: "not serving \(timing.warmingTimeout) after it was planned"), now: now)
        default:
            return []
        }
    }

    private mutating func startHead() -> [Action] {
        guard let plan else { return [] }
        headStarted = true
        return [.startHead(plan, epoch: epoch)]
    }

    /// The plan is lost: stop all its work and plan again after a short wait.
    private mutating func lose(_ incident: PoolIncident, now: ContinuousClock.Instant) -> [Action] {
        let nodes = Array(dirty.union(plan?.nodes ?? [])).sorted()
        lastIncident = incident
        plan = nil
        readyMembers = []
        headStarted = false
        reason = incident.detail
        nextPlanAt = now + timing.replanDelay
        return enter(.degraded, now: now) + [.report(incident), .stopWork(nodes)]
    }

    private mutating func quarantine(_ node: NodeID, now: ContinuousClock.Instant) {
        var entry = losses[node] ?? (count: 0, last: now, until: now)
        if now - entry.last > timing.flapWindow { entry.count = 0 }
        entry.count += 1
        entry.last = now
        entry.until = now + min(timing.quarantine * (1 << min(entry.count - 1, 16)), timing.maxQuarantine)
        losses[node] = entry
    }

    private mutating func enter(_ next: PoolState, now: ContinuousClock.Instant) -> [Action] {
        if next != state {
            state = next
            since = now
        }
        return []
    }
}
