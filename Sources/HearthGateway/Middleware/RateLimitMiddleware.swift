import Foundation
import HearthCore
import Hummingbird
import NIOCore
import Synchronization

/// Per-key token buckets: `capacity` at once, refilled evenly over `period`. Keyed by client address for request
/// rates, and by source address for new nodes joining a public network.
final class RateLimiter: Sendable {
    private let buckets = Mutex<[String: TokenBucket]>([:])
    let capacity: Int
    private let refillPerSecond: Double
    private let clock = ContinuousClock()
    private let origin = ContinuousClock.now

    init(capacity: Int, period: Duration) {
        self.capacity = capacity
        self.refillPerSecond = Double(capacity) / period.seconds
    }

    convenience init(perMinute: Int) {
        self.init(capacity: perMinute, period: .seconds(60))
    }

    var perMinute: Int { capacity }

    func take(for client: String) -> TokenBucket.Decision {
        let now = seconds(since: origin)
        return buckets.withLock { buckets in
            if buckets.count > 10_000 {
                buckets = buckets.filter { !$0.value.isFull(now: now) }
            }
            var bucket = buckets[client] ?? TokenBucket(capacity: capacity, refillPerSecond: refillPerSecond, now: now)
            let decision = bucket.take(now: now)
            buckets[client] = bucket
            return decision
        }
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = clock.now - start
        return elapsed.seconds
    }
}

/// Rate limits `/v1` and `/api` by client, with `X-RateLimit-*` on every response and 429 + `Retry-After` when over.
/// It sits outside `OpenAIErrorMiddleware`, so every error has become a response by the time it adds its headers.
///
/// The client is the direct peer, unless that peer is a trusted proxy: then it is the right-most address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
struct RateLimitMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let limiter: RateLimiter
    let trustedProxies: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        // A peer gateway says whose request it forwards, as a trusted proxy does.
        let peer = context.remoteAddress?.ipAddress
        context.clientAddress = Self.clientAddress(
            peer: peer,
            forwardedFor: request.headers[values: .xForwardedFor],
            trustedProxies: context.viaPeer ? trustedProxies.union(peer.map { [$0] } ?? []) : trustedProxies
        )
        let path = request.uri.path
        guard CanonicalPath.isAPI(path) else {
            return try await next(request, context)
        }
        let decision = limiter.take(for: context.clientAddress)
        var headers = HTTPFields()
        headers[.rateLimitLimit] = String(limiter.perMinute)
        headers[.rateLimitRemaining] = String(decision.remaining)
        headers[.rateLimitReset] = String(decision.resetSeconds)
        guard decision.allowed else {
            headers[.retryAfter] = String(decision.retryAfterSeconds)
            let message = "Rate limit of \(limiter.perMinute) requests per minute exceeded; retry in \(decision.retryAfterSeconds) s."
            return OpenAIError.response(
                for: APIFailure(.rateLimited, message, code: "rate_limit_exceeded"),
                headers: headers,
                shape: ErrorShape(path: path)
            )
        }
        var response = try await next(request, context)
        response.headers.append(contentsOf: headers)
        return response
    }

    /// The address a request is attributed to.
    static func clientAddress(peer: String?, forwardedFor: [String], trustedProxies: Set<String>) -> String {
        guard let peer else { return "unknown" }
        guard trustedProxies.contains(peer) else { return peer }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return hops.last { !trustedProxies.contains($0) } ?? peer
    }
}
