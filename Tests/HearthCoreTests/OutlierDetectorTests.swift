import Testing

@testable import HearthCore

struct OutlierDetectorTests {
    let start = ContinuousClock.now
    let a = NodeID(String(repeating: "a", count: 64))!
    let b = NodeID(String(repeating: "b", count: 64))!
    let c = NodeID(String(repeating: "c", count: 64))!

    func at(_ seconds: Double) -> ContinuousClock.Instant { start + .milliseconds(Int(seconds * 1000)) }

    @Test func fiveFailuresInARowEjectForTenSecondsThenTheNodeIsBack() {
        var detector = OutlierDetector()
        for _ in 0..<4 { #expect(detector.record(a, success: false, population: 4, now: at(0)) == nil) }
        #expect(detector.record(a, success: true, population: 4, now: at(0)) == nil, "a success ends the run")
        for _ in 0..<4 { detector.record(a, success: false, population: 4, now: at(1)) }
        #expect(!detector.isEjected(a, now: at(1)))
        #expect(detector.record(a, success: false, population: 4, now: at(1)) == at(11))
        #expect(detector.isEjected(a, now: at(10.9)))
        #expect(!detector.isEjected(a, now: at(11)))
        #expect(!detector.isEjected(b, now: at(5)))
    }

    @Test func aHighFailureRateEjectsOnceThereAreEnoughRequests() {
        var detector = OutlierDetector()
        // Failures spread out (never five in a row) but more than half of the last requests.
        var ejectedAt: Int?
        for index in 0..<20 {
            if detector.record(a, success: index % 3 == 2, population: 4, now: at(0)) != nil {
                ejectedAt = index
                break
            }
        }
        // 10 requests are needed; the tenth makes 7 failures of 10.
        #expect(ejectedAt == 9)
    }

    @Test func eachEjectionLastsLongerUpToTheCap() {
        var policy = OutlierPolicy()
        policy.maxEjection = .seconds(25)
        var detector = OutlierDetector(policy: policy)
        var now = 0.0
        var lengths: [Double] = []
        for _ in 0..<4 {
            var until: ContinuousClock.Instant?
            while until == nil { until = detector.record(a, success: false, population: 2, now: at(now)) }
            lengths.append((until! - at(now)).seconds)
            now += lengths.last! + 1
        }
        #expect(lengths == [10, 20, 25, 25])
        #expect(detector.ejections(of: a) == 4)
    }

    @Test func neverMoreThanHalfTheNodesAreOutAtOnce() {
        var detector = OutlierDetector()
        for _ in 0..<5 { detector.record(a, success: false, population: 3, now: at(0)) }
        #expect(detector.isEjected(a, now: at(0)), "one of three may be out (half of three, rounded down)")
        for _ in 0..<5 { detector.record(b, success: false, population: 3, now: at(0)) }
        #expect(detector.ejectedCount(now: at(0)) == 1)
        #expect(!detector.isEjected(b, now: at(0)))
        // The only node is never ejected.
        var alone = OutlierDetector()
        for _ in 0..<50 { alone.record(c, success: false, population: 1, now: at(0)) }
        #expect(!alone.isEjected(c, now: at(0)))
    }

    @Test func retriesStayWithinTheirShareOfTheRequests() {
        let budget = RetryBudget()
        #expect(budget.allows(retries: 3, requests: 0), "a few retries are always allowed")
        #expect(!budget.allows(retries: 5, requests: 10))
        #expect(budget.allows(retries: 49, requests: 100))
        #expect(!budget.allows(retries: 50, requests: 100))
        #expect(!RetryBudget(ratio: 0.2, minimum: 3).allows(retries: 3, requests: 10))
    }
}
