import Foundation
import HearthCore
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat
import Synchronization

/// Checks a share of the answers nodes give on another node serving the same file (docs/ROUTING.md, "Spot checks"):
/// the claimed tokens are scored under the checker's model (`SpotCheck`), the verdict goes into `spot_checks`, the
/// node's reputation (and so its routing score) and `hearth_spot_checks_total{result}`.
///
/// A check runs after the client has its answer, in the background, at most `maxConcurrent` at once (more are
/// skipped); it costs the client nothing and earns the checker nothing (its receipt is not settled).
final class SpotChecker: Sendable {
    let policy: SpotCheck.Policy
    let dispatcher: Dispatcher
    let database: GatewayDatabase
    let metrics: GatewayMetrics
    let logger: Logger
    /// Checks under way (at most `maxConcurrent`; one waiting for a free checker counts).
    private let running = Mutex(0)
    static let maxConcurrent = 2

    init(policy: SpotCheck.Policy, dispatcher: Dispatcher, database: GatewayDatabase, metrics: GatewayMetrics, logger: Logger) {
        self.policy = policy
        self.dispatcher = dispatcher
        self.database = database
        self.metrics = metrics
        self.logger = logger
    }

    /// One finished answer that could be checked.
    struct Answer: Sendable {
        var requestID: String
        var node: NodeID
        var model: ModelID
        var sha256: SHA256Digest
        var endpoint: CompletionEndpoint
        var body: JSONValue
        var consumer: String
        /// What a check scores (the answer's ids up to its first gap, or its text when it reported no ids); and every
        /// id it reported.
        var claim: SpotCheck.Claim
        var reported: [Int32]
        /// Whether the engine ended the answer (`finish_reason: stop`), so that the check asks whether the model would.
        var endedByEngine = false
    }

    /// Checks `answer` when the policy picks it: every new node's first answers, then a share of the rest. Every answer
    /// is checked against the model's vocabulary, which costs nothing.
    func consider(_ answer: Answer) {
        if let vocabulary = dispatcher.catalog[answer.model]?.shape.vocabulary, let token = answer.reported.first(where: { $0 >= vocabulary }) {
            let verdict = SpotCheck.Verdict(
                tokens: answer.reported.count,
                meanLogprob: 0,
                outsideTopK: 1,
                passed: false,
                reason: "claims token \(token), past the model's vocabulary of \(vocabulary)"
            )
            Task { await conclude(answer, checker: "-", verdict: verdict, inconclusive: "") }
            return
        }
        guard policy.share > 0 || policy.firstAnswers > 0, answer.claim.isJudgeable, SpotCheck.checkable(answer.body) else { return }
        let checked = dispatcher.registry.spotCheckStanding(of: answer.node).checked
        guard checked < policy.firstAnswers || Double.random(in: 0..<1) < policy.share else { return }
        let started = running.withLock { count -> Bool in
            guard count < Self.maxConcurrent else { return false }
            count += 1
            return true
        }
        guard started else { return }
        Task {
            defer { running.withLock { $0 -= 1 } }
            await check(answer)
        }
    }

    /// Scores the answer on another node and records the verdict. A failure counts only when a second checker, when
    /// there is one, agrees: a dishonest checker cannot cost an honest node its reputation on its own word.
    func check(_ answer: Answer) async {
        var excluded = uncheckingNodes(for: answer.sha256).union([answer.node])
        let first: (checker: NodeID, verdict: SpotCheck.Verdict?)
        do {
            first = try await scoreOnceACheckerIsFree(answer, excluding: excluded)
        } catch {
            await conclude(answer, checker: "-", verdict: nil, inconclusive: "\(error)")
            return
        }
        guard let verdict = first.verdict else {
            await conclude(
                answer,
                checker: first.checker.rawValue,
                verdict: nil,
                inconclusive: "the checker's answer did not follow the claimed tokens or text"
            )
            return
        }
        guard !verdict.passed else {
            await conclude(answer, checker: first.checker.rawValue, verdict: verdict, inconclusive: "")
            return
        }
        excluded.insert(first.checker)
        guard let second = try? await score(answer, excluding: excluded), let confirmation = second.verdict else {
            // No second opinion to be had: the one there is stands.
            await conclude(answer, checker: first.checker.rawValue, verdict: verdict, inconclusive: "")
            return
        }
        if confirmation.passed {
            await conclude(
                answer,
                checker: first.checker.rawValue,
                verdict: nil,
                inconclusive: "the checkers disagree (\(second.checker.short) passed it: \(verdict.reason ?? ""))"
            )
        } else {
            await conclude(answer, checker: first.checker.rawValue, verdict: verdict, inconclusive: "")
        }
    }

    /// Nodes that serve the file only through an owner's own server: such a server may ignore a grammar or report no
    /// log-probabilities, and its answers are what checks are for, so it never checks another's.
    private func uncheckingNodes(for sha256: SHA256Digest) -> Set<NodeID> {
        let nodes = dispatcher.registry.routableNodes().filter { node in
            node.models.contains { $0.sha256 == sha256 && $0.backend != nil }
        }
        return Set(nodes.map(\.id))
    }

    /// `score`, asked again after a while when no checker can take it yet (each busy, loading or failing: the
    /// dispatcher's refusal then says when to come back), `checkerWaits` times at most. A check is background work; without the
    /// wait, a small network's one checker, busy with the answer's neighbours, passed over a new node's first answers,
    /// the ones every node has checked.
    private func scoreOnceACheckerIsFree(
        _ answer: Answer,
        excluding: Set<NodeID>
    ) async throws -> (checker: NodeID, verdict: SpotCheck.Verdict?) {
        for wait in Self.checkerWaits {
            do {
                return try await score(answer, excluding: excluding)
            } catch let refusal as DispatchFailure where refusal.retryAfter != nil {
                metrics.spotCheckWaited()
                try await Task.sleep(for: wait)
            }
        }
        return try await score(answer, excluding: excluding)
    }

    /// The waits between tries while no checker is free: about 15 s in all.
    static let checkerWaits: [Duration] = [.seconds(1), .seconds(2), .seconds(4), .seconds(8)]

    /// One checker's verdict on the answer: `nil` when its answer did not follow the claimed tokens or text.
    /// - Throws: when no node other than `excluding` serves the same file, or the checker broke off.
    private func score(_ answer: Answer, excluding: Set<NodeID>) async throws -> (checker: NodeID, verdict: SpotCheck.Verdict?) {
        let ending = SpotCheck.checksEnding(answer.body, claim: answer.claim, endedByEngine: answer.endedByEngine, policy: policy)
        let request = SpotCheck.request(for: answer.body, claim: answer.claim, chat: answer.endpoint == .chat, ending: ending, policy: policy)
        // To the checker it is one more request of the same consumer, under an id from the generator of every other.
        let opened = try await dispatcher.open(
            endpoint: answer.endpoint,
            model: answer.model,
            body: request,
            requestID: RequestID().description,
            consumer: answer.consumer,
            logger: logger,
            excluding: excluding,
            sameFile: answer.sha256
        )
        var body = opened.firstChunk ?? ByteBuffer()
        do {
            var rest = try await opened.response.body.collect(upTo: 32 << 20)
            body.writeBuffer(&rest)
            dispatcher.finish(opened)
        } catch {
            dispatcher.finish(opened, broken: true)
            throw error
        }
        let json = (try? JSONValue.parse(body.readableBytesView)) ?? .null
        guard opened.response.status == 200 else { return (opened.node, nil) }
        return (opened.node, SpotCheck.verdict(answer: json, claim: answer.claim, ending: ending, policy: policy))
    }

    /// Records a check's verdict (`nil`: inconclusive, for the reason given).
    private func conclude(_ answer: Answer, checker: String, verdict: SpotCheck.Verdict?, inconclusive: String) async {
        let result = verdict.map { $0.passed ? "pass" : "fail" } ?? "inconclusive"
        if verdict == nil {
            logger.info("spot check inconclusive", metadata: ["node.id": "\(answer.node.short)", "reason": "\(inconclusive)"])
        }
        metrics.spotCheck(result: result)
        if let verdict {
            dispatcher.registry.spotChecked(answer.node, passed: verdict.passed)
            if !verdict.passed {
                logger.warning(
                    "spot check failed",
                    metadata: ["node.id": "\(answer.node.short)", "checker.id": "\(checker.prefix(12))", "reason": "\(verdict.reason ?? "")"]
                )
            }
        }
        do {
            try await database.record(
                SpotCheckRecord(
                    requestID: answer.requestID,
                    nodeID: answer.node.rawValue,
                    checkerID: checker,
                    model: answer.model.rawValue,
                    tokens: verdict?.tokens ?? 0,
                    meanLogprob: verdict?.meanLogprob ?? 0,
                    outsideTopK: verdict?.outsideTopK ?? 0,
                    result: result,
                    reason: verdict.map { $0.reason } ?? inconclusive,
                    createdAt: Date()
                )
            )
        } catch {
            logger.error("could not store a spot check", metadata: ["error": "\(error)"])
        }
    }
}
