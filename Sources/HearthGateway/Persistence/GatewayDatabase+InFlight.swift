import Foundation
import HearthStore
package import Logging

extension GatewayDatabase {
    static let inFlightMigration = Migration(
        "v6-in-flight",
        [
            """
            CREATE TABLE in_flight (request_id TEXT PRIMARY KEY NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL,
                node_id TEXT NOT NULL, consumer TEXT, account TEXT, started_at {datetime} NOT NULL)
            """
        ]
    )

    /// Notes a request a node is serving, so that a crash leaves a trace of it. The write is queued at once
    /// (`GroupCommit`), ahead of the request's own usage row, and nobody waits for it: it stays off the response's
    /// critical path. The usage row's transaction removes the note.
    package func markInFlight(_ usage: UsageRecord, logger: Logger) {
        let gateway = gatewayID
        commits.enqueue(
            { session in
                try session.execute(
                    """
                    INSERT INTO in_flight (request_id, route, model, node_id, consumer, account, started_at, gateway)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING
                    """,
                    usage.requestID,
                    usage.route,
                    usage.model,
                    usage.nodeID ?? "",
                    usage.consumer,
                    usage.account,
                    usage.startedAt,
                    gateway
                )
                return nil
            },
            failed: { error in logger.error("could not note a request in flight", metadata: ["error": "\(error)"]) }
        )
    }

    /// The requests noted in flight and not finished, by any gateway of the database: what a crash now would record as
    /// cut off (for tests, which must not crash a gateway before its notes are written).
    func requestsNotedInFlight() async throws -> [String] {
        try await store.read { session in try session.query("SELECT request_id FROM in_flight").map { try $0.string("request_id") } }
    }

    /// Turns the requests a previous run was serving when it stopped without finishing them (a crash, SIGKILL) into
    /// usage rows with status `cut_off`. Run at start, before serving.
    /// - Returns: how many there were.
    func recoverCutOffRequests(now: Date = Date()) async throws -> Int {
        let gateway = gatewayID
        return try await store.write { session in
            // Another gateway's requests in a shared database are its own to recover; rows from before gateways were
            // named are this one's (only one gateway used the database then).
            let mine = "gateway = ? OR gateway IS NULL"
            let rows = try session.query("SELECT * FROM in_flight WHERE \(mine)", gateway)
            for row in rows {
                let startedAt = try row.date("started_at")
                try Self.insert(
                    UsageRecord(
                        requestID: try row.string("request_id"),
                        route: try row.string("route"),
                        model: try row.string("model"),
                        nodeID: row.optionalString("node_id"),
                        promptTokens: 0,
                        completionTokens: 0,
                        status: RequestOutcome.cutOff.stored,
                        startedAt: startedAt,
                        firstByteMilliseconds: nil,
                        durationMilliseconds: now.timeIntervalSince(startedAt) * 1000,
                        consumer: row.optionalString("consumer"),
                        account: row.optionalString("account")
                    ),
                    into: session,
                    ignoringDuplicates: true
                )
            }
            try session.execute("DELETE FROM in_flight WHERE \(mine)", gateway)
            return rows.count
        }
    }
}
