/// Checking that a node's answer is what the model it claims would say (docs/ROUTING.md, "Spot checks").
///
/// The claimed tokens are scored under another node's copy of the model: that node is asked the same request with a
/// grammar that forces exactly those token ids (llama.cpp's `<[id]>` terminals) and for the log-probabilities of
/// each. llama-server reports them before the grammar constrains sampling, so each forced token comes with the
/// probability the model itself gives it, and its rank among the `topK` most likely: teacher forcing in one request.
/// An honest answer, sampled or greedy, is made of tokens the model finds likely; another model's, or random tokens,
/// are not. An answer the engine ended itself is also asked whether the model would stop there: the checker is given
/// one token more than the claimed ones, and once the grammar is complete only an end-of-generation token can follow,
/// reported with the probability the model gives it. Where the model ended its text, that token is among its most
/// likely (llama-server b11434: log-probability about −0.2, first); where a node cut an answer short and said it
/// stopped, it is not (about −16 to −21, outside the top 40). Pure: building the request, reading the answer and
/// judging it.
package enum SpotCheck {
    package struct Policy: Sendable, Equatable {
        /// The share of checkable answers checked, besides every new node's first `firstAnswers`.
        package var share = 0.03
        package var firstAnswers = 3
        /// The alternatives asked for at each position; a claimed token among them is "likely". 40 is llama.cpp's
        /// default `top_k`: an honest sampled token is always among its model's 40 most likely.
        var topK = 40
        /// At most this share of the claimed tokens may fall outside the top `topK` ...
        var maxOutsideTopK = 0.1
        /// ... and their mean log-probability must be at least this.
        var minMeanLogprob = -4.0
        /// The most claimed tokens one check scores (the first ones).
        var maxTokens = 128
        /// A check by text (`SpotCheck+Text`) fails a text whose log-probability per byte, as the checker's model
        /// gives it, is below this (`bench/results/spot-checks.md`, "Checked by text").
        var textMinLogprobPerByte = -3.0

        package init() {}
    }

    /// One claimed token as the checker's model sees it.
    package struct Scored: Sendable, Equatable {
        var logprob: Double
        var inTopK: Bool

        package init(logprob: Double, inTopK: Bool) {
            self.logprob = logprob
            self.inTopK = inTopK
        }
    }

    package struct Verdict: Sendable, Equatable {
        package var tokens: Int
        package var meanLogprob: Double
        package var outsideTopK: Double
        package var passed: Bool
        /// Why it failed, in words.
        package var reason: String?

        package init(tokens: Int, meanLogprob: Double, outsideTopK: Double, passed: Bool, reason: String?) {
            self.tokens = tokens
            self.meanLogprob = meanLogprob
            self.outsideTopK = outsideTopK
            self.passed = passed
            self.reason = reason
        }
    }

    /// Whether an answer to `body` can be judged this way: a client's own constraints (logit bias, grammars, schemas,
    /// tools, a wide top-k at a high temperature) make honest answers look unlikely, so those are not checked.
    package static func checkable(_ body: JSONValue) -> Bool {
        for member in ["logit_bias", "grammar", "json_schema", "tools", "response_format", "n_probs"] {
            if let value = body[member], value != .null { return false }
        }
        if let temperature = body["temperature"]?.doubleValue, temperature > 1.2 { return false }
        if let topK = body["top_k"]?.integerValue, topK <= 0 || topK > 40 { return false }
        return true
    }

    /// Whether a check of this answer also asks if the model would stop where it stopped: the engine ended it
    /// (`finish_reason: stop`), not a stop string of the client's, and the whole answer is scored.
    package static func checksEnding(_ body: JSONValue, claimed: [Int32], endedByEngine: Bool, policy: Policy = Policy()) -> Bool {
        endedByEngine && !claimed.isEmpty && claimed.count <= policy.maxTokens && (body["stop"] ?? .null) == .null
    }

    /// The request that scores `claimed` (at most `policy.maxTokens` of them) on another node: the original body, not
    /// streamed, greedy, with a grammar forcing exactly those tokens and the log-probabilities of each; with `ending`,
    /// one token more, which only the end of the text can be.
    package static func request(for body: JSONValue, claimed: [Int32], chat: Bool, ending: Bool = false, policy: Policy = Policy()) -> JSONValue {
        let tokens = claimed.prefix(policy.maxTokens)
        return forcing(
            body,
            grammar: "root ::= " + tokens.map { "<[\($0)]>" }.joined(separator: " "),
            maxTokens: tokens.count + (ending ? 1 : 0),
            chat: chat,
            policy: policy
        )
    }

    /// `body` made a check: not streamed, greedy, with `grammar` forcing what is scored, room for `maxTokens`, and the
    /// log-probabilities of each token with the top `policy.topK`.
    static func forcing(_ body: JSONValue, grammar: String, maxTokens: Int, chat: Bool, policy: Policy) -> JSONValue {
        var check = body
        for member in ["stream", "stream_options", "timings_per_token", Continuation.field] { check[member] = nil }
        check["grammar"] = .string(grammar)
        check["max_tokens"] = .integer(Int64(maxTokens))
        check["temperature"] = 0
        if chat {
            check["logprobs"] = true
            check["top_logprobs"] = .integer(Int64(policy.topK))
        } else {
            check["logprobs"] = .integer(Int64(policy.topK))
        }
        return check
    }

    /// The claimed tokens' scores from the checker's answer, or `nil` when the answer did not follow them (a checker
    /// that ignored the grammar cannot vouch for anything). With `ending`, the answer may carry one entry more: the
    /// end of the text (see `ending(answer:claimed:)`).
    package static func scores(answer: JSONValue, claimed: [Int32], ending: Bool = false, policy: Policy = Policy()) -> [Scored]? {
        guard let entries = answer["choices"]?[0]?["logprobs"]?["content"]?.arrayValue else { return nil }
        let expected = Array(claimed.prefix(policy.maxTokens))
        guard entries.count == expected.count || (ending && entries.count == expected.count + 1) else { return nil }
        var scored: [Scored] = []
        for (entry, token) in zip(entries.prefix(expected.count), expected) {
            guard let score = Self.score(of: entry), entry["id"]?.integerValue == Int64(token) else { return nil }
            scored.append(score)
        }
        return scored
    }

    /// The end of the text after the claimed tokens, as the checker's model scores it: the entry after them, whichever
    /// end-of-generation token it is (the grammar allows nothing else there). `nil` when the checker gave none.
    package static func ending(answer: JSONValue, claimed: [Int32]) -> Scored? {
        answer["choices"]?[0]?["logprobs"]?["content"]?[claimed.count].flatMap(Self.score(of:))
    }

    /// One entry of a checker's `logprobs.content`: the token it gives, scored. `nil` when the entry is not one.
    static func score(of entry: JSONValue) -> Scored? {
        guard let id = entry["id"]?.integerValue, let logprob = entry["logprob"]?.doubleValue else { return nil }
        let alternatives = entry["top_logprobs"]?.arrayValue ?? []
        return Scored(logprob: logprob, inTopK: alternatives.contains { $0["id"]?.integerValue == id })
    }

    /// Passes when the claimed tokens are, by both measures, what the model finds likely, and, when the `ending` was
    /// scored, when the model would end the text there too.
    package static func judge(_ scored: [Scored], ending: Scored? = nil, policy: Policy = Policy()) -> Verdict {
        guard !scored.isEmpty else { return Verdict(tokens: 0, meanLogprob: 0, outsideTopK: 0, passed: true, reason: nil) }
        let mean = scored.map(\.logprob).reduce(0, +) / Double(scored.count)
        let outside = Double(scored.filter { !$0.inTopK }.count) / Double(scored.count)
        var reason = misplacedEnd(ending, policy: policy)
        if reason == nil, outside > policy.maxOutsideTopK {
            reason = "\(Int((outside * 100).rounded())) % of the tokens are outside the model's top \(policy.topK)"
        } else if reason == nil, mean < policy.minMeanLogprob {
            reason = "mean log-probability \(mean) is below \(policy.minMeanLogprob)"
        }
        return Verdict(tokens: scored.count, meanLogprob: mean, outsideTopK: outside, passed: reason == nil, reason: reason)
    }

    /// Why an answer's scored `ending` fails it: the end of the text outside the model's top `policy.topK`.
    static func misplacedEnd(_ ending: Scored?, policy: Policy) -> String? {
        guard let ending, !ending.inTopK else { return nil }
        return "the answer ends where the model would not: the end of the text is outside its top \(policy.topK) "
            + "(log-probability \(ending.logprob))"
    }
}
