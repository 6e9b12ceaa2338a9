import Foundation
import Testing

@testable import HearthCore

@Suite struct PoolMachineTests {
    static let start = ContinuousClock.now
    static func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int(seconds * 1000)) }

    /// A three-node plan: head 1, members 2 and 3.
    static func plan(head: UInt8 = 1, members: [UInt8] = [2, 3]) -> PoolPlan {
        PoolPlan(
            model: DefaultModel.id,
            sha256: DefaultModel.sha256,
            context: 8192,
            slots: 1,
            build: .current,
            head: .init(node: PoolPlannerTests.id(head), layers: 10, memoryBytes: 1),
            members: members.map { .init(node: PoolPlannerTests.id($0), layers: 10, memoryBytes: 1) }
        )
    }

    /// Runs a machine to `ready` on `plan`, checking each step's actions.
    static func ready(_ plan: PoolPlan = plan()) -> PoolMachine {
        var machine = PoolMachine(now: at(0))
        #expect(machine.handle(.tick, now: at(0)) == [.plan(excluding: [])])
        // A second tick while the planner works asks nothing more.
        #expect(machine.handle(.tick, now: at(0.1)).isEmpty)
        let started = machine.handle(.planned(plan), now: at(0.2))
        #expect(started == plan.members.map { .startMember($0, epoch: 1) })
        #expect(machine.state == .warming && machine.progress == "0 of 2 members ready")
        #expect(machine.handle(.memberReady(plan.members[0].node, epoch: 1), now: at(1)).isEmpty)
        #expect(machine.handle(.headReady(epoch: 1), now: at(1)).isEmpty, "a head that was never started cannot be ready")
        #expect(machine.handle(.memberReady(plan.members[1].node, epoch: 1), now: at(2)) == [.startHead(plan, epoch: 1)])
        #expect(machine.handle(.memberReady(plan.members[1].node, epoch: 1), now: at(2)).isEmpty, "the head starts once")
        #expect(machine.handle(.headReady(epoch: 1), now: at(3)).isEmpty)
        #expect(machine.state == .ready && machine.since == at(3))
        return machine
    }

    @Test func warmsMembersFirstThenTheHead() {
        let machine = Self.ready()
        #expect(machine.epoch == 1 && machine.lastIncident == nil)
    }

    @Test func aLostMemberStopsEverythingAndReplansWithoutIt() {
        var machine = Self.ready()
        let lost = PoolPlannerTests.id(2)
        let actions = machine.handle(.memberLost(lost, epoch: 1, detail: "link closed"), now: Self.at(10))
        #expect(machine.state == .degraded)
        let incident = PoolIncident(kind: .memberLost, node: lost, detail: "link closed")
        #expect(actions == [.report(incident), .stopWork([PoolPlannerTests.id(1), PoolPlannerTests.id(2), PoolPlannerTests.id(3)])])
        #expect(machine.lastIncident == incident)
        // The head's crash that follows is the same incident: the plan is gone, so it is not reported again.
        #expect(machine.handle(.headFailed(epoch: 1, detail: "status 134"), now: Self.at(10.1)).isEmpty)
        #expect(machine.handle(.tick, now: Self.at(10.5)).isEmpty, "planning waits for the replan delay")
        #expect(machine.handle(.tick, now: Self.at(11)) == [.plan(excluding: [lost])])
        let next = Self.plan(head: 1, members: [3, 4])
        #expect(machine.handle(.planned(next), now: Self.at(11.2)) == next.members.map { .startMember($0, epoch: 2) })
        // News of the old plan's work is ignored.
        #expect(machine.handle(.memberReady(PoolPlannerTests.id(3), epoch: 1), now: Self.at(12)).isEmpty)
        #expect(machine.readyMembers.isEmpty)
        #expect(machine.handle(.memberLost(PoolPlannerTests.id(2), epoch: 2, detail: "gone"), now: Self.at(12)).isEmpty, "not in this plan")
    }

    @Test func aCrashedOrStalledHeadIsAnIncidentAndAShortStallIsNot() {
        var crashed = Self.ready()
        let actions = crashed.handle(.headFailed(epoch: 1, detail: "exited with status 134"), now: Self.at(5))
        #expect(actions.first == .report(PoolIncident(kind: .headCrashed, node: PoolPlannerTests.id(1), detail: "exited with status 134")))
        #expect(crashed.state == .degraded)

        var stalled = Self.ready()
        #expect(stalled.handle(.headStalled(epoch: 1, seconds: 5), now: Self.at(5)).isEmpty)
        #expect(stalled.state == .ready)
        let stall = stalled.handle(.headStalled(epoch: 1, seconds: 30), now: Self.at(30))
        #expect(stall.first.map { if case .report(let incident) = $0 { incident.kind == .stall } else { false } } == true)
        #expect(stalled.state == .degraded)
    }

    @Test func failedPlansBackOffReportOnceAndRecoverWhenCapacityReturns() {
        var machine = PoolMachine(now: Self.at(0))
        let error = PoolPlanError.tooSmall(layers: 20, needed: 30, nodes: 2)
        #expect(machine.handle(.tick, now: Self.at(0)) == [.plan(excluding: [])])
        let first = machine.handle(.planFailed(error), now: Self.at(0))
        #expect(first == [.report(PoolIncident(kind: .failed, detail: error.description))])
        #expect(machine.state == .failed && machine.progress == error.description)
        // Backoff: 2 s, then 4 s, then 8 s, at most 30 s; the same reason is not reported again.
        var plans: [Double] = []
        var time = 0.0
        while time < 120 {
            time += 0.5
            if machine.handle(.tick, now: Self.at(time)) == [.plan(excluding: [])] {
                plans.append(time)
                #expect(machine.handle(.planFailed(error), now: Self.at(time)).isEmpty)
            }
        }
        let gaps = zip(plans.dropFirst(), plans).map { $0 - $1 }
        #expect(plans.first == 2 && gaps.prefix(3) == [4, 8, 16])
        #expect(gaps.allSatisfy { $0 <= 30 } && gaps.last == 30)
        // Capacity came back.
        time += 30
        #expect(machine.handle(.tick, now: Self.at(time)) == [.plan(excluding: [])])
        #expect(!machine.handle(.planned(Self.plan()), now: Self.at(time)).isEmpty)
        #expect(machine.state == .warming)
    }

    @Test func aFlappingMemberCannotCauseAReplanStorm() {
        var machine = Self.ready()
        let flapper = PoolPlannerTests.id(2)
        var time = 3.0
        var replans = 0
        var quarantines: [Double] = []
        // For ten minutes the flapping node is lost within seconds of every plan that takes it.
        while time < 600 {
            time += 0.5
            for action in machine.handle(.tick, now: Self.at(time)) {
                guard case .plan(let excluded) = action else { continue }
                replans += 1
                let next = excluded.contains(flapper) ? Self.plan(head: 1, members: [3, 4]) : Self.plan()
                _ = machine.handle(.planned(next), now: Self.at(time))
                if !excluded.contains(flapper) {
                    _ = machine.handle(.memberLost(flapper, epoch: machine.epoch, detail: "flap"), now: Self.at(time + 2))
                    quarantines.append(time + 2)
                    time += 2
                }
            }
        }
        // The node is kept out 10, 20, 40, 80, 160, 300 s: 7 losses in ten minutes, each followed by one plan without it.
        #expect(quarantines.count <= 8, "lost \(quarantines.count) times: \(quarantines)")
        #expect(replans <= 2 * quarantines.count + 1)
        let gaps = zip(quarantines.dropFirst(), quarantines).map { $0 - $1 }
        #expect(gaps.prefix(4).enumerated().allSatisfy { $1 >= 10 * pow(2, Double($0)) })
    }

    @Test func anIntentionalStopIsNoIncident() {
        var machine = Self.ready()
        let actions = machine.handle(.stop, now: Self.at(5))
        #expect(actions == [.stopWork([PoolPlannerTests.id(1), PoolPlannerTests.id(2), PoolPlannerTests.id(3)])])
        #expect(machine.state == .stopping)
        #expect(machine.handle(.memberLost(PoolPlannerTests.id(2), epoch: 1, detail: "stopped"), now: Self.at(6)).isEmpty)
        #expect(machine.handle(.tick, now: Self.at(30)).isEmpty)
        #expect(machine.handle(.workGone, now: Self.at(7)).isEmpty)
        #expect(machine.state == .stopped && machine.lastIncident == nil)
        // A pool that never started stops at once.
        var fresh = PoolMachine(now: Self.at(0))
        #expect(fresh.handle(.stop, now: Self.at(0)).isEmpty)
        #expect(fresh.state == .stopped)
    }

    @Test func warmingThatNeverFinishesTimesOut() {
        var machine = PoolMachine(now: Self.at(0))
        _ = machine.handle(.tick, now: Self.at(0))
        _ = machine.handle(.planned(Self.plan()), now: Self.at(0))
        #expect(machine.handle(.tick, now: Self.at(599)).isEmpty)
        let actions = machine.handle(.tick, now: Self.at(600))
        #expect(actions.first.map { if case .report(let incident) = $0 { incident.kind == .warmingTimeout } else { false } } == true)
        #expect(machine.state == .degraded)
    }
}
