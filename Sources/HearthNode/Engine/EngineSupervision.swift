import Foundation

/// What an engine's supervisor does next, decided without processes: its counters (failed starts in a row, ports
/// found taken) and its rules in one value that `EngineSupervisorService` asks at every turn and does what it says.
///
/// The rules: a node that is stopping ends the loop; an engine nobody wants waits in standby; the file's hash is
/// checked once before the first start; an engine that exits while wanted is started again after a backoff that
/// doubles per failed start (a run that became healthy starts the count again); a port taken between choosing and
/// binding it is tried again at once, a few times, and is a failure after that; a supervisor that does not restart
/// (a pool's head, whose gateway plans again first) gives up instead.
struct EngineSupervision: Sendable, Equatable {
    /// How one run of the engine ended.
    enum Outcome: Sendable, Equatable {
        /// It became healthy (and has since exited or been stopped).
        case healthy
        case unhealthy
        /// Another process took the chosen port before the engine bound it.
        case portTaken
    }

    /// What the supervisor sees when it asks.
    enum Event: Sendable, Equatable {
        /// The start of a turn: whether the engine is wanted and whether the node is stopping.
        case turn(wanted: Bool, stopping: Bool)
        /// The file was looked at: present with the pinned hash, or not (the reason is already reported).
        case fileChecked(ready: Bool)
        /// A run ended as `outcome`; wanted and stopping as they are now.
        case ran(Outcome, wanted: Bool, stopping: Bool)
        /// A restart's wait is over.
        case waited
    }

    enum Step: Sendable, Equatable {
        /// The node is stopping: the supervisor returns.
        case stop
        /// Nobody wants the engine: standby until someone does, then a new turn.
        case standby
        /// Check the file (fetching it first when missing) before the first start.
        case checkFile
        /// Run the engine, until it exits or is stopped.
        case start
        /// Report `failure` if there is one, wait this many seconds, then start again (`waited`).
        case restart(afterSeconds: Double, failure: String?)
        /// Report `failure` if there is one, or that the engine exited unless a failure is reported already; return.
        case giveUp(failure: String?)
        /// Begin a new turn (`turn`).
        case newTurn
    }

    /// Immediate restarts after a taken port, before it counts as a failure.
    static let portRetries = 5

    /// Whether an engine that exits is started again.
    let restarts: Bool
    private(set) var verified = false
    private(set) var failuresInARow = 0
    private(set) var portsTaken = 0

    init(restarts: Bool = true) {
        self.restarts = restarts
    }

    /// Seconds to wait before the next start: 0.5 s after a crash of a healthy engine, doubling per failed start, at
    /// most 30 s.
    static func backoff(afterFailures failures: Int) -> Double {
        min(30, 0.5 * pow(2, Double(min(failures, 10))))
    }

    mutating func next(_ event: Event) -> Step {
        switch event {
        case .turn(let wanted, let stopping):
            if stopping { return .stop }
            if !wanted { return .standby }
            return verified ? .start : .checkFile
        case .fileChecked(let ready):
            verified = ready
            // A file that is not ready has its reason reported, and the engine unwanted: the next turn says standby.
            return ready ? .start : .newTurn
        case .ran(let outcome, let wanted, let stopping):
            // Stopped, or evicted: no failure of the engine's.
            if stopping || !wanted {
                failuresInARow = 0
                portsTaken = 0
                return .newTurn
            }
            if outcome == .portTaken {
                portsTaken += 1
                if portsTaken <= Self.portRetries { return .start }
            }
            // A port never free is a failed start like any other.
            let failure = portsTaken > Self.portRetries ? "the engine could not bind a loopback port \(portsTaken) times in a row" : nil
            portsTaken = 0
            guard restarts else { return .giveUp(failure: failure) }
            failuresInARow = outcome == .healthy ? 0 : failuresInARow + 1
            return .restart(afterSeconds: Self.backoff(afterFailures: failuresInARow), failure: failure)
        case .waited:
            return .newTurn
        }
    }
}
