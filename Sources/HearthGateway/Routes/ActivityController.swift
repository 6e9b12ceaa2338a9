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
            let now = Int64(Date().timeIntervalSince1970)
            let bucket = Int64(Self.bucketSeconds)
            let last = now / bucket * bucket
            let first = last - Int64(minutes - 1) * bucket
            let found = try await database.activity(since: Date(timeIntervalSince1970: TimeInterval(first)), bucketSeconds: Self.bucketSeconds)
            let byStart = Dictionary(found.map { ($0.start, $0) }, uniquingKeysWith: { first, _ in first })
            let buckets = stride(from: first, through: last, by: Int(bucket)).map { start in
                byStart[start] ?? ActivityBucket(start: start, requests: 0, failed: 0, promptTokens: 0, completionTokens: 0)
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
