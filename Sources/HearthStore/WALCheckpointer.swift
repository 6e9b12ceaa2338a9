import GRDB
import Synchronization

/// Copies the write-ahead log back into the database file on a connection of its own, off the writer.
///
/// SQLite's own checkpoint runs on the connection that commits, once the log passes a thousand pages: every
/// fiftieth request or so (a request writes about twenty pages) waited 4 ms behind the writer, which was the
/// gateway's 99th percentile of added latency. Here the writer never checkpoints (`wal_autocheckpoint = 0`); a write
/// asks for a checkpoint, which runs `delay` later on this connection, so a burst of writes shares one. A passive
/// checkpoint runs beside the writer and the readers and waits for neither. An idle database asks for none, and
/// nothing wakes.
///
/// The log starts over from its beginning only when a transaction begins with all of it copied, which a steady
/// stream of writes never leaves time for (a passive checkpoint copies what was committed when it began). So once
/// the log holds `limitFrames` pages, the writer itself restarts it after the passive copy: it has only the pages
/// committed meanwhile left to copy, a short pause for every 16 MiB written (under the bench's ceiling load the log
/// stayed under 26 MB, and the 99th percentile of a sequential answer went from 5.6 to 2.7–3.0 ms).
final class WALCheckpointer: Sendable {
    private let connection: DatabaseQueue
    private let writer: any DatabaseWriter
    private let delay: Duration
    private let limitFrames: Int
    private let state = Mutex(State())

    private struct State {
        /// A checkpoint is waiting for its delay or running.
        var scheduled = false
        /// The scheduled one has begun: a commit from now on asks for the next, which follows it.
        var running = false
        /// A commit came while one ran.
        var again = false
        var runs = 0
    }

    init(path: String, writer: any DatabaseWriter, delay: Duration = .milliseconds(100), limitFrames: Int = 4_096) throws {
        var configuration = Configuration()
        configuration.label = "checkpointer"
        connection = try DatabaseQueue(path: path, configuration: configuration)
        self.writer = writer
        self.delay = delay
        self.limitFrames = limitFrames
    }

    /// Checkpoints run so far, each with its restart when one was due (for tests).
    var runs: Int { state.withLock { $0.runs } }

    /// Something was committed: a checkpoint follows within `delay`. One runs at a time: a restart on the writer while
    /// the next passive copy ran on this connection would find the log busy and be skipped (the log then grew past
    /// its limit by what was written before the next one).
    func wrote() {
        let start = state.withLock { state -> Bool in
            if state.running { state.again = true }
            defer { state.scheduled = true }
            return !state.scheduled
        }
        guard start else { return }
        Task {
            try? await Task.sleep(for: delay)
            state.withLock { $0.running = true }
            await checkpoint()
            // What was committed while it ran asks for the next one.
            let again = state.withLock { state -> Bool in
                defer { (state.scheduled, state.running, state.again) = (false, false, false) }
                return state.again
            }
            if again { wrote() }
        }
    }

    private func checkpoint() async {
        do {
            let (frames, _) = try await connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }
            if frames >= limitFrames {
                _ = try await writer.writeWithoutTransaction { db in try db.checkpoint(.restart) }
            }
            state.withLock { $0.runs += 1 }
        } catch {
            // A busy or closed database: the next write asks again.
        }
    }
}
