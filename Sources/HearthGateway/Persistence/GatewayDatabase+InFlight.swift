public import Foundation
public import GRDB
public import Logging

extension GatewayDatabase {
    static func registerInFlightMigrations(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v6-in-flight") { db in
            try db.create(table: "in_flight") { table in
                table.column("request_id", .text).primaryKey()
                table.column("route", .text).notNull()
                table.column("model", .text).notNull()
                table.column("node_id", .text).notNull()
                table.column("consumer", .text)
                table.column("account", .text)
                table.column("started_at", .datetime).notNull()
            }
        }
    }

    /// Notes a request a node is serving, so that a crash leaves a trace of it. The write is queued at once
    /// (`GroupCommit`), ahead of the request's own usage row, and nobody waits for it: it stays off the response's
    /// critical path. The usage row's transaction removes the note.
    public func markInFlight(_ usage: UsageRecord, logger: Logger) {
        commits.enqueue(
            { db in
                try db.execute(
                    sql: """
                        INSERT OR IGNORE INTO in_flight (request_id, route, model, node_id, consumer, account, started_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [usage.requestID, usage.route, usage.model, usage.nodeID ?? "", usage.consumer, usage.account, usage.startedAt]
                )
                return nil
            },
            failed: { error in logger.error("could not note a request in flight", metadata: ["error": "\(error)"]) }
        )
    }

    /// Turns the requests a previous run was serving when it stopped without finishing them (a crash, SIGKILL) into
    /// usage rows with status `cut_off`. Run at start, before serving.
    /// - Returns: how many there were.
    public func recoverCutOffRequests(now: Date = Date()) async throws -> Int {
        try await writer.write { db in
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM in_flight")
            for row in rows {
                let startedAt: Date = row["started_at"]
                try UsageRecord(
                    requestID: row["request_id"],
                    route: row["route"],
                    model: row["model"],
                    nodeID: row["node_id"],
                    promptTokens: 0,
                    completionTokens: 0,
                    status: "cut_off",
                    startedAt: startedAt,
                    firstByteMilliseconds: nil,
                    durationMilliseconds: now.timeIntervalSince(startedAt) * 1000,
                    consumer: row["consumer"],
                    account: row["account"]
                ).insert(db, onConflict: .ignore)
            }
            try db.execute(sql: "DELETE FROM in_flight")
            return rows.count
        }
    }
}
