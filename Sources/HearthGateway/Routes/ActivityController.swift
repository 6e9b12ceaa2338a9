import Foundation
import Hummingbird

/// `GET /api/activity?minutes=N`: the gateway's requests, tokens and time to first token per minute over the last
/// `N` minutes (default 60, at most a day), every minute present (zeros where nothing happened), oldest first. The
/// network page draws its charts from it; the numbers come from the usage records, so they survive a restart.
struct ActivityController {
    let database: GatewayDatabase

    static let bucketSeconds = 60

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/activity") { request, _ in
            let minutes = Int(try QueryParameter.integer(request, "minutes", default: 60, in: 1...1440))
            let window = BucketWindow(count: minutes, seconds: Int64(Self.bucketSeconds))
            let found = try await database.activity(since: window.since, bucketSeconds: Self.bucketSeconds)
            let buckets = window.fill(found, start: \.start) {
                ActivityBucket(start: $0, requests: 0, failed: 0, promptTokens: 0, completionTokens: 0)
            }
            return try CatalogController.response(Activity(bucketSeconds: Self.bucketSeconds, buckets: buckets))
        }
    }

    struct Activity: Encodable {
        var bucketSeconds: Int
        var buckets: [ActivityBucket]

        enum CodingKeys: String, CodingKey {
            case bucketSeconds = "bucket_seconds"
            case buckets
        }
    }
}

/// The last `count` buckets of `seconds` each, up to the one holding now: what the activity and history routes answer,
/// every bucket present, oldest first.
struct BucketWindow {
    let first: Int64
    let last: Int64
    let seconds: Int64

    init(count: Int, seconds: Int64, now: Date = Date()) {
        self.seconds = seconds
        last = Int64(now.timeIntervalSince1970) / seconds * seconds
        first = last - Int64(count - 1) * seconds
    }

    var since: Date { Date(timeIntervalSince1970: TimeInterval(first)) }

    /// Every bucket of the window: the one `found` for its start, else `empty(start)`.
    func fill<Bucket>(_ found: [Bucket], start: KeyPath<Bucket, Int64>, empty: (Int64) -> Bucket) -> [Bucket] {
        let byStart = Dictionary(found.map { ($0[keyPath: start], $0) }, uniquingKeysWith: { first, _ in first })
        return stride(from: first, through: last, by: Int(seconds)).map { byStart[$0] ?? empty($0) }
    }
}
