/// A token bucket: `capacity` requests at once, refilled at `refillPerSecond`.
///
/// Time is passed in, so the arithmetic is tested without clocks.
package struct TokenBucket: Sendable, Equatable {
    let capacity: Double
    let refillPerSecond: Double
    private(set) var tokens: Double
    private(set) var updatedAt: Double

    package init(capacity: Int, refillPerSecond: Double, now: Double) {
        self.capacity = Double(capacity)
        self.refillPerSecond = refillPerSecond
        self.tokens = Double(capacity)
        self.updatedAt = now
    }

    /// The result of one attempt to take a token.
    package struct Decision: Sendable, Equatable {
        package var allowed: Bool
        /// Whole tokens left after this request.
        package var remaining: Int
        /// Seconds until the bucket is full again.
        package var resetSeconds: Int
        /// Seconds until a request would be allowed (0 when allowed).
        package var retryAfterSeconds: Int
    }

    /// Takes one token if there is one.
    package mutating func take(now: Double) -> Decision {
        refill(now: now)
        let allowed = tokens >= 1
        if allowed { tokens -= 1 }
        let missing = capacity - tokens
        let reset = refillPerSecond > 0 ? Int((missing / refillPerSecond).rounded(.up)) : 0
        let retry = allowed ? 0 : (refillPerSecond > 0 ? max(1, Int(((1 - tokens) / refillPerSecond).rounded(.up))) : 60)
        return Decision(allowed: allowed, remaining: Int(tokens.rounded(.down)), resetSeconds: reset, retryAfterSeconds: retry)
    }

    /// True when the bucket has refilled completely by `now` and can be forgotten.
    package func isFull(now: Double) -> Bool {
        tokens + max(0, now - updatedAt) * refillPerSecond >= capacity
    }

    private mutating func refill(now: Double) {
        let elapsed = max(0, now - updatedAt)
        tokens = min(capacity, tokens + elapsed * refillPerSecond)
        updatedAt = max(updatedAt, now)
    }
}
