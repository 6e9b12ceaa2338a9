package import Foundation
import HearthStore

/// The gateway's traffic over time, from its usage records: what the network page charts.
package struct ActivityBucket: Sendable, Equatable, Encodable {
    /// Start of the bucket, Unix seconds.
    package var start: Int64
    /// Requests that reached routing: served, cut off or refused.
    package var requests: Int
    /// Requests that ended in an error (not served in full and not left by their client).
    package var failed: Int
    package var promptTokens: Int
    package var completionTokens: Int
    /// Mean milliseconds to the node's first byte over the requests that got one, or `nil` when none did.
    package var firstTokenMilliseconds: Double?

    enum CodingKeys: String, CodingKey {
        case start, requests, failed
        case promptTokens = "prompt_tokens"
        case completionTokens = "completion_tokens"
        case firstTokenMilliseconds = "first_token_ms"
    }
}

extension GatewayDatabase {
    /// Usage in buckets of `bucketSeconds` from `since` to now, oldest first; buckets without requests are absent.
    package func activity(since: Date, bucketSeconds: Int) async throws -> [ActivityBucket] {
        try await store.read { session in
            // `started_at` is indexed.
            let rows = try session.query(
                """
                SELECT \(session.dialect.epochSeconds("started_at")) / ? AS bucket, COUNT(*) AS requests,
                    SUM(CASE WHEN status IN ('ok', 'client_closed') THEN 0 ELSE 1 END) AS failed,
                    SUM(prompt_tokens) AS prompt, SUM(completion_tokens) AS completion, AVG(first_byte_ms) AS first_byte
                FROM usage WHERE started_at >= ? GROUP BY bucket ORDER BY bucket
                """,
                bucketSeconds,
                since
            )
            return try rows.map { row in
                ActivityBucket(
                    start: try row.int64("bucket") * Int64(bucketSeconds),
                    requests: try row.int("requests"),
                    failed: try row.int("failed"),
                    promptTokens: try row.int("prompt"),
                    completionTokens: try row.int("completion"),
                    firstTokenMilliseconds: row.optionalDouble("first_byte")
                )
            }
        }
    }
}

/// One account's tokens used and contributed in a bucket of time.
package struct AccountActivityBucket: Sendable, Equatable, Encodable {
    package var start: Int64
    /// Tokens of requests the account made (its own and its API keys').
    package var consumedTokens: Int
    /// Tokens credited to nodes the account certified (a pooled request's share of it, for a pool's member).
    package var contributedTokens: Int

    enum CodingKeys: String, CodingKey {
        case start
        case consumedTokens = "consumed_tokens"
        case contributedTokens = "contributed_tokens"
    }
}

extension GatewayDatabase {
    /// Hourly totals per account, written in the same transaction as its standing (`addToStanding`), so the account
    /// page's history and the standing it shows come from the same charges.
    static let accountActivityMigration = Migration(
        "v9-account-activity",
        [
            """
            CREATE TABLE account_activity (account TEXT NOT NULL, hour {integer} NOT NULL, consumed {integer} NOT NULL,
                contributed {integer} NOT NULL, PRIMARY KEY (account, hour))
            """
        ]
    )

    static let accountActivityBucketSeconds: Int64 = 3600

    static func addToAccountActivity(_ session: any SQLSession, account: String, contributed: Double, consumed: Double, now: Date) throws {
        let hour = Int64(now.timeIntervalSince1970) / accountActivityBucketSeconds * accountActivityBucketSeconds
        try session.execute(
            """
            INSERT INTO account_activity (account, hour, consumed, contributed) VALUES (?, ?, ?, ?)
            ON CONFLICT (account, hour) DO UPDATE SET consumed = account_activity.consumed + excluded.consumed,
            contributed = account_activity.contributed + excluded.contributed
            """,
            account,
            hour,
            Int64(consumed.rounded()),
            Int64(contributed.rounded())
        )
    }

    /// What `account` consumed and contributed per `bucketSeconds` (a multiple of an hour) since `since`, oldest
    /// first; buckets with neither are absent. These are raw tokens; standing decays them (see `Reciprocity`).
    package func accountActivity(of account: String, since: Date, bucketSeconds: Int) async throws -> [AccountActivityBucket] {
        let firstHour = Int64(since.timeIntervalSince1970) / Self.accountActivityBucketSeconds * Self.accountActivityBucketSeconds
        return try await store.read { session in
            try session.query(
                """
                SELECT hour / ? * ? AS bucket, SUM(consumed) AS consumed, SUM(contributed) AS contributed
                FROM account_activity WHERE account = ? AND hour >= ? GROUP BY bucket ORDER BY bucket
                """,
                bucketSeconds,
                bucketSeconds,
                account,
                firstHour
            ).map { row in
                AccountActivityBucket(
                    start: try row.int64("bucket"),
                    consumedTokens: try row.int("consumed"),
                    contributedTokens: try row.int("contributed")
                )
            }
        }
    }
}
