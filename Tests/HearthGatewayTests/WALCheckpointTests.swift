import Foundation
import HearthTesting
import Testing

@testable import HearthStore

/// SQLite's log is copied back by the store's own checkpointing connection, not by the writer at a commit, and it
/// starts over instead of growing without end.
struct WALCheckpointTests {
    @Test func theLogIsCheckpointedOffTheWriterAndStaysBounded() async throws {
        let directory = try TestEnvironment.temporaryDirectory("wal")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/test.sqlite"
        let limit = 64
        let store = try SQLiteStore.open(path: path, checkpointFrames: limit)
        try await store.write { session in
            _ = try session.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body BLOB NOT NULL)", [])
        }
        let writerCheckpoints = try await store.write { session in try session.query("PRAGMA wal_autocheckpoint", []) }
        #expect(writerCheckpoints.first?["wal_autocheckpoint"] == .integer(0), "the writer checkpoints at commits itself")

        let rounds = 40
        let perRound = 10
        let body = Data(repeating: 7, count: 3_000)
        for round in 0..<rounds {
            for index in 0..<perRound {
                try await store.write { session in
                    _ = try session.execute("INSERT INTO notes (id, body) VALUES (?, ?)", [round * perRound + index, body])
                }
            }
            // The round's writes ask for a checkpoint, which follows them shortly (one that began before the last of
            // them, on a busy machine, is followed by another). Counted from here: one that ran while the round was
            // written does not let the next round start before this one's was copied.
            let before = store.checkpoints
            _ = try await eventually("a checkpoint after round \(round)", within: .seconds(30)) {
                store.checkpoints > before ? true : nil
            }
        }
        // Every insert wrote at least a page: without the restarts the log would hold them all.
        let logBytes = try #require(try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int)
        let pageBytes = 4_096 + 24
        #expect(logBytes < (limit + 3 * perRound) * pageBytes, "the log grew to \(logBytes / pageBytes) pages")
        #expect(rounds * perRound > 3 * (limit + 3 * perRound), "the test writes too little to tell")
        await store.close()

        let reopened = try SQLiteStore.open(path: path)
        let count = try await reopened.read { session in try session.query("SELECT count(*) AS n FROM notes", []) }
        #expect(count.first?["n"] == .integer(Int64(rounds * perRound)))
    }
}
