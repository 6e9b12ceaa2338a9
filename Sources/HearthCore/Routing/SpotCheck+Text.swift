/// Spot checks of answers that carry no token ids: an owner's own server (`hearth node --backend`) reports text only.
///
/// The checker is forced through the answer's text instead of its ids: a grammar whose one rule is the text as a string
/// literal, so that at temperature 0 the checker takes, at each step, the likeliest token that keeps to the text, and
/// reports its log-probability before the grammar (the model's own, as for forced ids). Its tokens may split the text
/// otherwise than the answering model did; they are the ones the checker's model finds likeliest, so an honest answer
/// scores about as well as by its own ids. Judged per byte (`judgeText`), the check catches text made of nothing (random
/// words, junk); the fluent answer of another model passes (measured: `bench/spot-check-calibration.py --text`),
/// where a check by ids catches it (another tokenizer's ids are nonsense): the text check is the weaker one.
extension SpotCheck {
    /// What a spot check scores of an answer.
    package enum Claim: Sendable, Equatable {
        /// The ids the node reported, up to the first gap.
        case tokens([Int32])
        /// The answer's text, when it reported no ids at all.
        case text(String)

        /// Whether there is enough to judge: any id, or a text of at least `minTextBytes` (a few words' likelihood
        /// says little either way).
        package var isJudgeable: Bool {
            switch self {
            case .tokens(let ids): !ids.isEmpty
            case .text(let text): text.utf8.count >= SpotCheck.minTextBytes
            }
        }
    }

    /// Whether a check of `claim` also asks if the model would stop where the answer stopped.
    package static func checksEnding(_ body: JSONValue, claim: Claim, endedByEngine: Bool, policy: Policy = Policy()) -> Bool {
        switch claim {
        case .tokens(let claimed): checksEnding(body, claimed: claimed, endedByEngine: endedByEngine, policy: policy)
        case .text(let text): checksEnding(body, text: text, endedByEngine: endedByEngine)
        }
    }

    /// The request that checks `claim` on another node.
    package static func request(for body: JSONValue, claim: Claim, chat: Bool, ending: Bool, policy: Policy = Policy()) -> JSONValue {
        switch claim {
        case .tokens(let claimed): request(for: body, claimed: claimed, chat: chat, ending: ending, policy: policy)
        case .text(let text): request(for: body, text: text, chat: chat, policy: policy)
        }
    }

    /// The verdict on `claim` from the checker's answer to `request(for:claim:…)`; `nil` when the checker did not
    /// follow what it was forced through (it vouches for nothing).
    package static func verdict(answer: JSONValue, claim: Claim, ending: Bool, policy: Policy = Policy()) -> Verdict? {
        switch claim {
        case .tokens(let claimed):
            guard let scored = scores(answer: answer, claimed: claimed, ending: ending, policy: policy) else { return nil }
            return judge(scored, ending: ending ? self.ending(answer: answer, claimed: claimed) : nil, policy: policy)
        case .text(let text):
            guard let scored = scores(answer: answer, text: text) else { return nil }
            return judgeText(scored.scored, bytes: scoredText(text).utf8.count, ending: ending ? scored.end : nil, policy: policy)
        }
    }

    /// The least text a check judges: about 16 tokens of English.
    static let minTextBytes = 64

    /// The verdict on the checker's tokens of a text of `bytes` bytes: it fails when the text is, byte for byte, less
    /// likely than `policy.textMinLogprobPerByte`, or (when its `ending` was scored) ends where the model would not.
    ///
    /// Not the bounds of a check by ids: the checker's tokens of a text are not the ones it was sampled as, so an
    /// honest answer at temperature 1 can have a third of them outside the top 40 and a mean of −5 per token, as much
    /// as words in a random order. Per byte the two stand apart (measured: honest answers no lower than −2.65, random
    /// words no higher than −3.23; `bench/results/spot-checks.md`), whatever the tokens' lengths.
    package static func judgeText(_ scored: [Scored], bytes: Int, ending: Scored? = nil, policy: Policy = Policy()) -> Verdict {
        guard !scored.isEmpty, bytes > 0 else { return Verdict(tokens: 0, meanLogprob: 0, outsideTopK: 0, passed: true, reason: nil) }
        let total = scored.map(\.logprob).reduce(0, +)
        let perByte = total / Double(bytes)
        let outside = Double(scored.filter { !$0.inTopK }.count) / Double(scored.count)
        var reason = misplacedEnd(ending, policy: policy)
        if reason == nil, perByte < policy.textMinLogprobPerByte {
            reason = "the text's log-probability is \(perByte) per byte, below \(policy.textMinLogprobPerByte)"
        }
        return Verdict(tokens: scored.count, meanLogprob: total / Double(scored.count), outsideTopK: outside, passed: reason == nil, reason: reason)
    }

    /// The most text one check scores (about 128 tokens of English): longer answers are scored from their start.
    static let maxTextBytes = 512

    /// The start of `text` a check scores: all of it, or as many whole characters as fit in `maxTextBytes`.
    package static func scoredText(_ text: String) -> Substring {
        guard text.utf8.count > maxTextBytes else { return text[...] }
        var end = text.startIndex
        var bytes = 0
        for index in text.indices {
            let next = bytes + text[index].utf8.count
            guard next <= maxTextBytes else { break }
            bytes = next
            end = text.index(after: index)
        }
        return text[..<end]
    }

    /// Whether a text check also asks if the model would stop where the answer stopped (as `checksEnding` for ids).
    package static func checksEnding(_ body: JSONValue, text: String, endedByEngine: Bool) -> Bool {
        endedByEngine && !text.isEmpty && scoredText(text).endIndex == text.endIndex && (body["stop"] ?? .null) == .null
    }

    /// The request that scores `text` (its `scoredText`) on another node. Room is left for one token more than the
    /// text could take (a token is at least a byte): once the text is matched only the end of generation can follow.
    package static func request(for body: JSONValue, text: String, chat: Bool, policy: Policy = Policy()) -> JSONValue {
        let scored = scoredText(text)
        return forcing(body, grammar: "root ::= " + grammarLiteral(scored), maxTokens: scored.utf8.count + 1, chat: chat, policy: policy)
    }

    /// `text` as a GBNF string literal (llama.cpp's grammar): quotes and backslashes escaped, control characters
    /// written as escapes; anything else, non-ASCII included, as it is (the grammar reads UTF-8).
    package static func grammarLiteral(_ text: Substring) -> String {
        var literal = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": literal += "\\\""
            case "\\": literal += "\\\\"
            case "\n": literal += "\\n"
            case "\r": literal += "\\r"
            case "\t": literal += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                let hex = String(scalar.value, radix: 16, uppercase: true)
                literal += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            default: literal.unicodeScalars.append(scalar)
            }
        }
        return literal + "\""
    }

    /// The checker's tokens of the scored text and, after them, its end (`nil` when it gave none), from its answer:
    /// the entries whose bytes make up exactly the text. `nil` when they do not (a checker that did not keep to the
    /// text vouches for nothing).
    package static func scores(answer: JSONValue, text: String) -> (scored: [Scored], end: Scored?)? {
        guard let entries = answer["choices"]?[0]?["logprobs"]?["content"]?.arrayValue else { return nil }
        let target = Array(scoredText(text).utf8)
        var produced: [UInt8] = []
        var scored: [Scored] = []
        var index = 0
        while produced.count < target.count, index < entries.count {
            guard let score = Self.score(of: entries[index]), let bytes = entries[index]["bytes"]?.arrayValue else { return nil }
            for byte in bytes {
                guard let value = byte.integerValue, (0...255).contains(value) else { return nil }
                produced.append(UInt8(value))
            }
            scored.append(score)
            index += 1
        }
        guard produced == target, !scored.isEmpty else { return nil }
        return (scored, index < entries.count ? Self.score(of: entries[index]) : nil)
    }
}
