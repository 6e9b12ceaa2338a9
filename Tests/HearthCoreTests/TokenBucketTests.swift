import Testing

@testable import HearthCore

struct TokenBucketTests {
    @Test func allowsABurstThenRefusesWithRetryAfter() {
        var bucket = TokenBucket(capacity: 3, refillPerSecond: 1, now: 0)
        #expect(bucket.take(now: 0).remaining == 2)
        #expect(bucket.take(now: 0).allowed)
        #expect(bucket.take(now: 0).allowed)
        let refused = bucket.take(now: 0)
        #expect(!refused.allowed)
        #expect(refused.remaining == 0)
        #expect(refused.retryAfterSeconds == 1)
        #expect(refused.resetSeconds == 3)
    }

    @Test func refillsOverTimeButNeverAboveCapacity() {
        var bucket = TokenBucket(capacity: 2, refillPerSecond: 0.5, now: 0)
        _ = bucket.take(now: 0)
        _ = bucket.take(now: 0)
        #expect(!bucket.take(now: 1).allowed)
        #expect(bucket.take(now: 2.1).allowed)
        #expect(bucket.take(now: 1000).remaining == 1)
        #expect(bucket.isFull(now: 2000))
    }
}
