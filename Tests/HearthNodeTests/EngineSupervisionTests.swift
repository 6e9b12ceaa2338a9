import Testing

@testable import HearthNode

/// The supervisor's rules, walked through without processes: `EngineSupervision` says what to do next, and the test
/// plays what happened.
struct EngineSupervisionTests {
    typealias Step = EngineSupervision.Step

    @Test func theFileIsCheckedOnceThenTheEngineStartsAndIsRestartedWithADoublingBackoff() {
        var supervision = EngineSupervision()
        #expect(supervision.next(.turn(wanted: true, stopping: false)) == .checkFile)
        #expect(supervision.next(.fileChecked(ready: true)) == .start)
        // Crashes before becoming healthy: 1 s, 2 s, 4 s…
        #expect(supervision.next(.ran(.unhealthy, wanted: true, stopping: false)) == .restart(afterSeconds: 1, failure: nil))
        #expect(supervision.next(.waited) == .newTurn)
        #expect(supervision.next(.turn(wanted: true, stopping: false)) == .start, "the file was checked again")
        #expect(supervision.next(.ran(.unhealthy, wanted: true, stopping: false)) == .restart(afterSeconds: 2, failure: nil))
        #expect(supervision.next(.ran(.unhealthy, wanted: true, stopping: false)) == .restart(afterSeconds: 4, failure: nil))
        // One that became healthy and later crashed starts the count again.
        #expect(supervision.next(.ran(.healthy, wanted: true, stopping: false)) == .restart(afterSeconds: 0.5, failure: nil))
        #expect(supervision.failuresInARow == 0)
        for _ in 0..<20 { _ = supervision.next(.ran(.unhealthy, wanted: true, stopping: false)) }
        #expect(supervision.next(.ran(.unhealthy, wanted: true, stopping: false)) == .restart(afterSeconds: 30, failure: nil))
    }

    @Test func backoffDoublesFromHalfASecondUpToThirtySeconds() {
        #expect(EngineSupervision.backoff(afterFailures: 0) == 0.5)
        #expect(EngineSupervision.backoff(afterFailures: 1) == 1)
        #expect(EngineSupervision.backoff(afterFailures: 3) == 4)
        #expect(EngineSupervision.backoff(afterFailures: 50) == 30)
    }

    @Test func aFileThatIsNotReadyIsNeverStarted() {
        var supervision = EngineSupervision()
        #expect(supervision.next(.turn(wanted: true, stopping: false)) == .checkFile)
        // Its reason is reported and the engine unwanted: the next turn waits in standby, and checks again after.
        #expect(supervision.next(.fileChecked(ready: false)) == .newTurn)
        #expect(supervision.next(.turn(wanted: false, stopping: false)) == .standby)
        #expect(supervision.next(.turn(wanted: true, stopping: false)) == .checkFile)
    }

    @Test func stoppingOrEvictionIsNoFailure() {
        var supervision = EngineSupervision()
        _ = supervision.next(.turn(wanted: true, stopping: false))
        _ = supervision.next(.fileChecked(ready: true))
        _ = supervision.next(.ran(.unhealthy, wanted: true, stopping: false))
        #expect(supervision.failuresInARow == 1)
        #expect(supervision.next(.ran(.healthy, wanted: false, stopping: false)) == .newTurn)
        #expect(supervision.failuresInARow == 0)
        #expect(supervision.next(.turn(wanted: false, stopping: false)) == .standby)
        #expect(supervision.next(.ran(.unhealthy, wanted: true, stopping: true)) == .newTurn)
        #expect(supervision.next(.turn(wanted: true, stopping: true)) == .stop)
        #expect(supervision.next(.turn(wanted: false, stopping: true)) == .stop)
    }

    @Test func aTakenPortIsTriedAgainAtOnceAFewTimesThenIsAFailedStart() {
        var supervision = EngineSupervision()
        _ = supervision.next(.turn(wanted: true, stopping: false))
        _ = supervision.next(.fileChecked(ready: true))
        for _ in 0..<EngineSupervision.portRetries {
            #expect(supervision.next(.ran(.portTaken, wanted: true, stopping: false)) == .start)
        }
        let taken = "the engine could not bind a loopback port \(EngineSupervision.portRetries + 1) times in a row"
        #expect(supervision.next(.ran(.portTaken, wanted: true, stopping: false)) == .restart(afterSeconds: 1, failure: taken))
        // The count starts again: five more at once.
        #expect(supervision.next(.ran(.portTaken, wanted: true, stopping: false)) == .start)
        // A port taken while the node stops is no reason to start.
        #expect(supervision.next(.ran(.portTaken, wanted: true, stopping: true)) == .newTurn)
        #expect(supervision.portsTaken == 0)
    }

    @Test func aSupervisorThatDoesNotRestartGivesUp() {
        var supervision = EngineSupervision(restarts: false)
        _ = supervision.next(.turn(wanted: true, stopping: false))
        _ = supervision.next(.fileChecked(ready: true))
        #expect(supervision.next(.ran(.healthy, wanted: true, stopping: false)) == .giveUp(failure: nil))
        var ports = EngineSupervision(restarts: false)
        for _ in 0..<EngineSupervision.portRetries { _ = ports.next(.ran(.portTaken, wanted: true, stopping: false)) }
        let taken = "the engine could not bind a loopback port 6 times in a row"
        #expect(ports.next(.ran(.portTaken, wanted: true, stopping: false)) == .giveUp(failure: taken))
        // Stopped, it only ends its turn.
        #expect(supervision.next(.ran(.healthy, wanted: true, stopping: true)) == .newTurn)
    }
}
