import Foundation
import Testing

@testable import HearthCore

/// Spot checks by text, for answers that carry no token ids (an owner's own server), on recorded outputs of
/// llama-server b11434 (Fixtures/spot-checks.json): SmolLM2 forced through a sampled SmolLM2 answer's text
/// (`honestText`) and through random words (`randomText`) by a string-literal grammar, with the top 40.
struct SpotCheckTextTests {
    static func recorded(_ name: String) throws -> (text: String, answer: JSONValue) {
        let fixture = try #require(SpotCheckTests.fixtures[name])
        return (try #require(fixture["text"]?.stringValue), try #require(fixture["answer"]))
    }

    @Test func anHonestAnswersTextPassesAndRandomWordsFail() throws {
        let honest = try Self.recorded("honestText")
        let honestScores = try #require(SpotCheck.scores(answer: honest.answer, text: honest.text))
        let pass = SpotCheck.judgeText(honestScores.scored, bytes: honest.text.utf8.count)
        #expect(pass.passed, "\(pass)")
        #expect(pass.tokens >= 30 && pass.meanLogprob > -2.5, "\(pass)")
        // The answer was cut by its max_tokens (it ends on "Here's"): claimed as ended by the engine, it would be caught.
        let end = try #require(honestScores.end)
        #expect(!end.inTopK && end.logprob < -10)
        #expect(!SpotCheck.judgeText(honestScores.scored, bytes: honest.text.utf8.count, ending: end).passed)

        let random = try Self.recorded("randomText")
        let randomScores = try #require(SpotCheck.scores(answer: random.answer, text: random.text))
        let fail = SpotCheck.judgeText(randomScores.scored, bytes: random.text.utf8.count)
        #expect(!fail.passed)
        #expect(fail.reason?.contains("per byte") == true && fail.outsideTopK > 0.3, "\(fail)")
    }

    @Test func aTextIsJudgedByteForByteAndByWhereItEnds() {
        let likely = SpotCheck.Scored(logprob: -3, inTopK: false)
        // Ten tokens at -3 over ten bytes is the bound itself; over nine, below it. Outside the top 40 does not count.
        #expect(SpotCheck.judgeText(Array(repeating: likely, count: 10), bytes: 10).passed)
        #expect(!SpotCheck.judgeText(Array(repeating: likely, count: 10), bytes: 9).passed)
        // The same text in long tokens: per token unlikely, per byte likely.
        #expect(SpotCheck.judgeText(Array(repeating: SpotCheck.Scored(logprob: -6, inTopK: true), count: 4), bytes: 24).passed)
        let text = Array(repeating: SpotCheck.Scored(logprob: -0.5, inTopK: true), count: 8)
        #expect(SpotCheck.judgeText(text, bytes: 30, ending: SpotCheck.Scored(logprob: -0.2, inTopK: true)).passed)
        let cut = SpotCheck.judgeText(text, bytes: 30, ending: SpotCheck.Scored(logprob: -17, inTopK: false))
        #expect(!cut.passed && cut.reason?.contains("ends where the model would not") == true)
        #expect(SpotCheck.judgeText([], bytes: 0).passed)
    }

    /// What the spot checker asks: one verdict for either kind of claim, by ids or by text.
    @Test func oneVerdictForIdsOrText() throws {
        let honest = try Self.recorded("honestText")
        let random = try Self.recorded("randomText")
        let ids = try SpotCheckTests.recorded("honest")
        #expect(SpotCheck.verdict(answer: honest.answer, claim: .text(honest.text), ending: false)?.passed == true)
        #expect(SpotCheck.verdict(answer: random.answer, claim: .text(random.text), ending: false)?.passed == false)
        #expect(SpotCheck.verdict(answer: ids.answer, claim: .tokens(ids.claimed), ending: false)?.passed == true)
        #expect(SpotCheck.verdict(answer: honest.answer, claim: .tokens(ids.claimed), ending: false) == nil, "not what it was forced through")
        #expect(SpotCheck.request(for: ["messages": []], claim: .text("Hi."), chat: true, ending: true)["grammar"] == #"root ::= "Hi.""#)
        #expect(SpotCheck.request(for: ["messages": []], claim: .tokens([7]), chat: true, ending: true)["max_tokens"] == 2)
        #expect(SpotCheck.Claim.text(String(repeating: "a", count: 63)).isJudgeable == false)
        #expect(SpotCheck.Claim.text(String(repeating: "a", count: 64)).isJudgeable)
        #expect(SpotCheck.Claim.tokens([]).isJudgeable == false)
    }

    @Test func aCheckerThatDidNotKeepToTheTextVouchesForNothing() throws {
        let honest = try Self.recorded("honestText")
        #expect(SpotCheck.scores(answer: honest.answer, text: honest.text.replacingOccurrences(of: "vital", with: "vitak")) == nil)
        #expect(SpotCheck.scores(answer: honest.answer, text: honest.text + " More.") == nil, "the checker's text is shorter")
        #expect(SpotCheck.scores(answer: ["choices": []], text: honest.text) == nil)
        #expect(SpotCheck.scores(answer: honest.answer, text: "") == nil)
        // Its tokens' bytes, not its text, are read: an entry without them is no answer.
        let serialized = String(decoding: honest.answer.serialized(), as: UTF8.self)
        let renamed = try #require(serialized.range(of: #""bytes""#))
        let stripped = try JSONValue.parse(Array(serialized.replacingCharacters(in: renamed, with: #""bites""#).utf8))
        #expect(SpotCheck.scores(answer: stripped, text: honest.text) == nil)
    }

    @Test func theTextBecomesOneGrammarLiteralAndACheckRequest() {
        #expect(SpotCheck.grammarLiteral("plain") == #""plain""#)
        #expect(SpotCheck.grammarLiteral("say \"hi\"\\ now") == #""say \"hi\"\\ now""#)
        #expect(SpotCheck.grammarLiteral("a\nb\tc\rd\u{01}e\u{7F}") == #""a\nb\tc\rd\x01e\x7F""#)
        #expect(SpotCheck.grammarLiteral("café 🔥") == "\"café 🔥\"")

        let body: JSONValue = ["model": "m", "messages": [["role": "user", "content": "hi"]], "stream": true, "temperature": 0.7]
        let check = SpotCheck.request(for: body, text: "Hé \"x\"", chat: true)
        #expect(check["grammar"] == #"root ::= "Hé \"x\"""#)
        #expect(check["max_tokens"] == 8, "room for one token more than the text's 7 bytes")
        #expect(check["temperature"] == 0 && check["stream"] == nil && check["logprobs"] == true && check["top_logprobs"] == 40)
    }

    /// A long answer is scored from its start, cut between characters, and is then not asked about its end.
    @Test func aLongAnswerIsScoredFromItsStartAtACharacterBoundary() {
        let short = "Paris."
        #expect(SpotCheck.scoredText(short) == short[...])
        let long = String(repeating: "é", count: 300) + "🔥"
        let scored = SpotCheck.scoredText(long)
        #expect(scored.utf8.count == 512 && scored.allSatisfy { $0 == "é" })
        let emoji = String(repeating: "a", count: 510) + "🔥🔥"
        #expect(SpotCheck.scoredText(emoji) == String(repeating: "a", count: 510)[...], "a 4-byte character is not split")
        let body: JSONValue = ["messages": []]
        #expect(SpotCheck.checksEnding(body, text: short, endedByEngine: true))
        #expect(!SpotCheck.checksEnding(body, text: long, endedByEngine: true), "not scored whole")
        #expect(!SpotCheck.checksEnding(body, text: short, endedByEngine: false))
        #expect(!SpotCheck.checksEnding(["stop": "."], text: short, endedByEngine: true), "ended by the client's stop string")
        #expect(SpotCheck.request(for: body, text: long, chat: true)["max_tokens"] == 513)
    }
}
