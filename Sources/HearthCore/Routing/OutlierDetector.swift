/// When a node fails too often, it leaves routing for a while, as Envoy's outlier detection does (docs/ROUTING.md,
/// "Ejection"): after `consecutiveFailures` failures in a row, or when more than `failureRate` of its last `window`
/// requests failed (once it has had `minimumRequests`). It is out for `baseEjection` times the number of times it has
/// been ejected, at most `maxEjection`, and never while that would leave fewer than half the nodes (`maxEjectedShare`).
///
/// Pure: time is passed in, so tests need no clock.
package struct OutlierPolicy: Sendable, Equatable {
    var consecutiveFailures = 5
    var failureRate = 0.5
    var minimumRequests = 10
    var window = 20
    var baseEjection: Duration = .seconds(10)
    var maxEjection: Duration = .seconds(300)
    var maxEjectedShare = 0.5

    package init() {}
}

package struct OutlierDetector: Sendable {
    struct Record: Sendable {
        var consecutive = 0
        var recent: [Bool] = []
        var ejections = 0
        var ejectedUntil: ContinuousClock.Instant?
    }

    let policy: OutlierPolicy
    private var records: [NodeID: Record] = [:]

    package init(policy: OutlierPolicy = OutlierPolicy()) {
        self.policy = policy
    }

    /// Records one request's outcome on `node`; `population` is how many nodes are linked now. Returns the end of the
    /// ejection it caused, if it caused one.
    @discardableResult
    package mutating func record(
        _ node: NodeID,
        success: Bool,
        population: Int,
        now: ContinuousClock.Instant
    ) -> ContinuousClock.Instant? {
        var record = records[node] ?? Record()
        defer { records[node] = record }
        record.consecutive = success ? 0 : record.consecutive + 1
        record.recent.append(success)
        if record.recent.count > policy.window { record.recent.removeFirst(record.recent.count - policy.window) }
        guard !isEjected(node, now: now) else { return nil }
        let failures = record.recent.filter { !$0 }.count
        let tooMany =
            record.consecutive >= policy.consecutiveFailures
            || (record.recent.count >= policy.minimumRequests
                && Double(failures) > policy.failureRate * Double(record.recent.count))
        guard tooMany else { return nil }
        // Never more than the allowed share of the nodes out at once: the last healthy-looking ones keep serving.
        let allowed = Int((policy.maxEjectedShare * Double(population)).rounded(.down))
        guard ejectedCount(now: now) + 1 <= allowed else { return nil }
        record.ejections += 1
        let length = min(policy.maxEjection, policy.baseEjection * record.ejections)
        let until = now + length
        record.ejectedUntil = until
        record.consecutive = 0
        record.recent = []
        return until
    }

    /// Whether `node` is out of routing at `now`.
    package func isEjected(_ node: NodeID, now: ContinuousClock.Instant) -> Bool {
        guard let until = records[node]?.ejectedUntil else { return false }
        return now < until
    }

    /// When `node`'s ejection ends, if it is ejected at `now`.
    package func ejectedUntil(_ node: NodeID, now: ContinuousClock.Instant) -> ContinuousClock.Instant? {
        guard let until = records[node]?.ejectedUntil, now < until else { return nil }
        return until
    }

    /// How many nodes are ejected at `now`.
    func ejectedCount(now: ContinuousClock.Instant) -> Int {
        records.values.filter { $0.ejectedUntil.map { now < $0 } ?? false }.count
    }

    /// How many times `node` has been ejected.
    package func ejections(of node: NodeID) -> Int { records[node]?.ejections ?? 0 }

    /// Forgets a node that left.
    mutating func forget(_ node: NodeID) { records[node] = nil }
}

/// Retries (another node before the first byte, a whole answer asked again) are allowed while fewer than `ratio` of the
/// requests in flight are retries, or fewer than `minimum` retries are in flight: a bad hour cannot multiply the load
/// on the nodes left (Envoy's retry budget). Half, not Envoy's fifth: in a network of a few volunteers one node's death
/// takes a quarter or a third of the requests with it, and all of them must go on. A continued stream is not a retry:
/// it resumes the work rather than repeating it (and `--max-continuations` bounds it per stream).
package struct RetryBudget: Sendable, Equatable {
    var ratio = 0.5
    var minimum = 4

    package init(ratio: Double = 0.5, minimum: Int = 4) {
        self.ratio = ratio
        self.minimum = minimum
    }

    /// Whether one more retry may start, with `retries` retries and `requests` requests (retries included) in flight.
    package func allows(retries: Int, requests: Int) -> Bool {
        retries < max(minimum, Int((ratio * Double(requests)).rounded(.down)))
    }
}
