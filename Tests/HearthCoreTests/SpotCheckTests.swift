import Foundation
import Testing

@testable import HearthCore

/// The spot-check comparator on recorded outputs of llama-server b11434 (Fixtures/spot-checks.json): SmolLM2 scoring
/// a sampled SmolLM2 answer (honest, temperature 0.7) and the ids of a Gemma 3 270M answer (another model; the ids
/// past SmolLM2's vocabulary dropped), each forced with a token grammar; and an answer SmolLM2 ended itself, scored
/// whole and cut to its first half, each with the one token more that only the end of the text can be.
struct SpotCheckTests {
    static let fixtures: JSONValue = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/spot-checks.json")
        return (try? JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: url))) ?? .null
    }()

    static func recorded(_ name: String) throws -> (claimed: [Int32], answer: JSONValue) {
        let fixture = try #require(fixtures[name])
        let claimed = try #require(fixture["claimed"]?.arrayValue).compactMap { $0.integerValue.map { Int32($0) } }
        return (claimed, try #require(fixture["answer"]))
    }

    @Test func anHonestSampledAnswerPassesAndAnotherModelsFails() throws {
        let honest = try Self.recorded("honest")
        let honestScores = try #require(SpotCheck.scores(answer: honest.answer, claimed: honest.claimed))
        let pass = SpotCheck.judge(honestScores)
        #expect(pass.passed, "\(pass)")
        #expect(pass.tokens == 16 && pass.outsideTopK == 0)

        let other = try Self.recorded("otherModel")
        let otherScores = try #require(SpotCheck.scores(answer: other.answer, claimed: other.claimed))
        let fail = SpotCheck.judge(otherScores)
        #expect(!fail.passed)
        #expect(fail.outsideTopK > 0.9 && fail.meanLogprob < -10, "\(fail)")
        #expect(fail.reason?.contains("outside the model's top 40") == true)
    }

    @Test func anAnswerThatDoesNotFollowTheClaimedTokensVouchesForNothing() throws {
        let honest = try Self.recorded("honest")
        var claimed = honest.claimed
        claimed[3] += 1
        #expect(SpotCheck.scores(answer: honest.answer, claimed: claimed) == nil)
        #expect(SpotCheck.scores(answer: honest.answer, claimed: Array(honest.claimed.dropLast())) == nil)
        #expect(SpotCheck.scores(answer: ["choices": []], claimed: honest.claimed) == nil)
    }

    @Test func judgingWeighsBothMeasures() {
        let likely = Array(repeating: SpotCheck.Scored(logprob: -1, inTopK: true), count: 10)
        #expect(SpotCheck.judge(likely).passed)
        // One unlikely token in ten is within tolerance; two are not.
        #expect(SpotCheck.judge(Array(likely.dropFirst()) + [SpotCheck.Scored(logprob: -12, inTopK: false)]).passed)
        #expect(!SpotCheck.judge(Array(likely.dropFirst(2)) + Array(repeating: SpotCheck.Scored(logprob: -12, inTopK: false), count: 2)).passed)
        // Tokens each in the top 40, but all of them improbable.
        #expect(!SpotCheck.judge(Array(repeating: SpotCheck.Scored(logprob: -5, inTopK: true), count: 10)).passed)
        #expect(SpotCheck.judge([]).passed)
    }

    @Test func theCheckForcesExactlyTheClaimedTokensGreedilyAndOnlyCheckableAnswersAreChecked() {
        let body: JSONValue = [
            "model": "m", "messages": [["role": "user", "content": "hi"]], "stream": true, "stream_options": ["include_usage": true],
            "temperature": 0.7, "max_tokens": 64,
        ]
        let check = SpotCheck.request(for: body, claimed: [5, 17, 3], chat: true)
        #expect(check["grammar"] == "root ::= <[5]> <[17]> <[3]>")
        #expect(check["max_tokens"] == 3 && check["temperature"] == 0 && check["stream"] == nil && check["stream_options"] == nil)
        #expect(check["logprobs"] == true && check["top_logprobs"] == 40)
        #expect(check["messages"] == body["messages"])
        #expect(SpotCheck.request(for: ["prompt": "x"], claimed: [1], chat: false)["logprobs"] == 40)

        #expect(SpotCheck.checkable(body))
        for (member, value) in [("logit_bias", ["5": 10]), ("grammar", "root ::= \"a\""), ("temperature", 1.5), ("top_k", 0), ("tools", [])]
            as [(String, JSONValue)]
        {
            var constrained = body
            constrained[member] = value
            #expect(!SpotCheck.checkable(constrained), "\(member)")
        }
    }

    @Test func anAnswerCutShortIsCaughtWhereTheModelWouldNotStop() throws {
        let whole = try Self.recorded("endsWhereTheModelEnds")
        let wholeScores = try #require(SpotCheck.scores(answer: whole.answer, claimed: whole.claimed, ending: true))
        let end = try #require(SpotCheck.ending(answer: whole.answer, claimed: whole.claimed))
        #expect(end.inTopK && end.logprob > -1, "\(end)")
        #expect(SpotCheck.judge(wholeScores, ending: end).passed)

        let cut = try Self.recorded("cutShort")
        let cutScores = try #require(SpotCheck.scores(answer: cut.answer, claimed: cut.claimed, ending: true))
        #expect(SpotCheck.judge(cutScores).passed, "its tokens alone are the model's own")
        let cutEnd = try #require(SpotCheck.ending(answer: cut.answer, claimed: cut.claimed))
        #expect(!cutEnd.inTopK && cutEnd.logprob < -10, "\(cutEnd)")
        let verdict = SpotCheck.judge(cutScores, ending: cutEnd)
        #expect(!verdict.passed && verdict.reason?.contains("ends where the model would not") == true, "\(verdict)")
        // Not asked about its end, an answer with one entry more did not follow the claimed tokens.
        #expect(SpotCheck.scores(answer: cut.answer, claimed: cut.claimed) == nil)
    }

    @Test func onlyAnAnswerTheEngineEndedWholeIsAskedAboutItsEnd() {
        let body: JSONValue = ["model": "m", "messages": [["role": "user", "content": "hi"]], "max_tokens": 64]
        #expect(SpotCheck.checksEnding(body, claimed: [1, 2, 3], endedByEngine: true))
        #expect(!SpotCheck.checksEnding(body, claimed: [1, 2, 3], endedByEngine: false), "ended by max_tokens")
        var stopString = body
        stopString["stop"] = ["\n"]
        #expect(!SpotCheck.checksEnding(stopString, claimed: [1, 2, 3], endedByEngine: true), "ended by the client's stop string")
        #expect(!SpotCheck.checksEnding(body, claimed: Array(repeating: 1, count: 129), endedByEngine: true), "not scored whole")
        #expect(!SpotCheck.checksEnding(body, claimed: [], endedByEngine: true))
        #expect(SpotCheck.request(for: body, claimed: [5, 17], chat: true, ending: true)["max_tokens"] == 3)
        #expect(SpotCheck.request(for: body, claimed: [5, 17], chat: true)["max_tokens"] == 2)
    }
}
