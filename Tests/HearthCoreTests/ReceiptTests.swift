import Foundation
import Testing

@testable import HearthCore

struct ReceiptTests {
    let node = IdentityKey.generate()
    let gateway = NodeID(String(repeating: "9", count: 64))!
    let account = NodeID(String(repeating: "a", count: 64))!

    func receipt(prompt: Int = 31, completion: Int = 8, maxTokens: Int = 16) -> Receipt {
        Receipt(
            requestID: "req-1",
            gateway: gateway,
            node: node.nodeID,
            account: account,
            consumer: "user:\(account.rawValue)",
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            promptTokens: prompt,
            completionTokens: completion,
            maxTokens: maxTokens,
            startedAt: 1_800_000_000_000,
            finishedAt: 1_800_000_000_400,
            outcome: .ok
        )
    }

    var relayed: Receipt.Relayed {
        Receipt.Relayed(
            requestID: "req-1",
            gateway: gateway,
            account: account,
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            consumer: "user:\(account.rawValue)",
            maxTokens: 16,
            promptTokens: 31,
            completionTokens: 8,
            sentAt: 1_799_999_999_990,
            endedAt: 1_800_000_000_410
        )
    }

    @Test func signsEncodesAndVerifiesForTheServingNodeOnly() throws {
        let message = try receipt().signed(by: node)
        let read = try COSESign1(decoding: try message.encoded())
        #expect(try Receipt.verified(read, from: node.nodeID) == receipt())
        #expect(receipt().problem(against: relayed) == nil)
        #expect(throws: ReceiptError.wrongSigner) { try Receipt.verified(read, from: IdentityKey.generate().nodeID) }

        // Signed by another node, claiming this one.
        let impostor = IdentityKey.generate()
        #expect(throws: ReceiptError.wrongSigner) { try Receipt.verified(try receipt().signed(by: impostor), from: impostor.nodeID) }
        var forged = try receipt().signed(by: impostor)
        forged.keyID = Array(node.publicKey)
        #expect(throws: ReceiptError.badSignature) { try Receipt.verified(forged, from: node.nodeID) }

        var inflated = message
        inflated.payload = try receipt(completion: 9).cbor.encoded()
        #expect(throws: ReceiptError.badSignature) { try Receipt.verified(inflated, from: node.nodeID) }
    }

    @Test func refusesCountsAndTimesThatDoNotMatchTheRelay() {
        #expect(receipt(completion: 9).problem(against: relayed) == .mismatch("completion_tokens above what the engine reported"))
        #expect(receipt(prompt: 40).problem(against: relayed) == .mismatch("prompt_tokens above what the engine reported"))
        var overLimit = relayed
        overLimit.completionTokens = 20
        #expect(receipt(completion: 20).problem(against: overLimit) == .mismatch("completion_tokens above max_tokens"))
        // The node reported a prompt the request could not make (`UsageBounds`), and signed it: refused all the same.
        var inflatedPrompt = relayed
        inflatedPrompt.promptTokens = 1_000_000
        inflatedPrompt.promptTokenLimit = 300
        #expect(receipt(prompt: 1_000_000).problem(against: inflatedPrompt) == .mismatch("prompt_tokens above what the request could make"))
        #expect(receipt(prompt: 300).problem(against: inflatedPrompt) == nil)
        var silent = relayed
        silent.promptTokens = nil
        silent.completionTokens = nil
        #expect(receipt().problem(against: silent) == .mismatch("tokens claimed but the engine reported none"))
        var late = receipt()
        late.finishedAt += 60_000
        #expect(late.problem(against: relayed) == .mismatch("times outside the request"))
        var otherModel = receipt()
        otherModel.modelSHA256 = SHA256Digest(hex: String(repeating: "0", count: 64))!
        #expect(otherModel.problem(against: relayed) == .mismatch("another model"))
        var otherAccount = receipt()
        otherAccount.account = NodeID.random()
        #expect(otherAccount.problem(against: relayed) == .mismatch("an account the node's certificate does not name"))
        var otherConsumer = receipt()
        otherConsumer.consumer = "anonymous"
        #expect(otherConsumer.problem(against: relayed) == .mismatch("another consumer"))
        // Fewer tokens than relayed is the node's loss, not a forgery.
        #expect(receipt(completion: 7).problem(against: relayed) == nil)
    }

    @Test func refusesMalformedReceiptMaps() throws {
        guard case .map(let pairs) = receipt().cbor else {
            Issue.record("not a map")
            return
        }
        func without(_ key: String) -> CBOR { .map(pairs.filter { $0.0 != .text(key) }) }
        func replacing(_ key: String, _ value: CBOR) -> CBOR { .map(pairs.map { $0.0 == .text(key) ? ($0.0, value) : $0 }) }
        let bad: [CBOR] = [
            .null, .array([]), without("node"), .map(pairs + [(.text("bonus"), .int(1))]),
            replacing("v", .int(2)), replacing("node", .text("short")), replacing("prompt_tokens", .int(-1)),
            replacing("completion_tokens", .text("8")), replacing("account", .int(1)), replacing("outcome", .text("great")),
            replacing("request", .text("")), replacing("model_sha256", .text("xyz")), replacing("started_ms", .int(-5)),
        ]
        for item in bad {
            #expect(throws: ReceiptError.self) { try Receipt(cbor: item) }
        }
        #expect(try Receipt(cbor: replacing("account", .null)).account == nil)
    }

    /// What a node reports is charged within what the request could make: a prompt of at most a token per byte of the
    /// request plus a template's share, a completion of at most `max_tokens`.
    @Test func usageIsBoundedByWhatTheRequestCouldMake() {
        let bounds = UsageBounds(requestBytes: 120, maxTokens: 16)
        #expect(bounds.promptTokens == 120 + UsageBounds.templateTokens && bounds.completionTokens == 16)
        #expect(bounds.clamped(TokenUsage(promptTokens: 31, completionTokens: 8)) == TokenUsage(promptTokens: 31, completionTokens: 8))
        #expect(bounds.clamped(TokenUsage(promptTokens: 1 << 40, completionTokens: 1_771_393)) == TokenUsage(promptTokens: 376, completionTokens: 16))
        #expect(bounds.clamped(TokenUsage(promptTokens: -7, completionTokens: -5)) == TokenUsage(promptTokens: 0, completionTokens: 0))
    }

    /// The bytes an answer may take follow from its tokens: the request's own, and 8 KiB for each event (each token and
    /// the two beside them), 512 more for each log-probability alternative asked for; no request's numbers overflow.
    @Test func anAnswersBytesAreBoundedByItsTokens() {
        #expect(UsageBounds(requestBytes: 120, maxTokens: 8).answerBytes == 120 + 10 * 8_192)
        #expect(UsageBounds(requestBytes: 120, maxTokens: 8).events == 10)
        let logprobs: JSONValue = ["max_tokens": 8, "logprobs": true, "top_logprobs": 20]
        #expect(UsageBounds.alternatives(in: logprobs) == 20)
        #expect(UsageBounds.alternatives(in: ["prompt": "a", "logprobs": 5, "n_probs": 7]) == 7)
        #expect(UsageBounds.alternatives(in: ["prompt": "a"]) == 0)
        #expect(UsageBounds(requestBytes: 0, maxTokens: 8, alternatives: 20).answerBytes == 10 * (8_192 + 20 * 512))
        let most = UsageBounds(requestBytes: .max, maxTokens: .max, alternatives: .max)
        #expect(most.answerBytes == (1 << 40) + ((1 << 40) + 2) * (8_192 + 1_024 * 512))
        #expect(most.events == (1 << 40) + 2)
        #expect(UsageBounds(requestBytes: -1, maxTokens: -1, alternatives: -1).answerBytes == 2 * 8_192)
    }

    /// A usage report no engine can make is no report: before, a node's `completion_tokens: -5` reached a metrics
    /// counter, which traps on a negative step, and took the gateway down; two counts near `Int.max` overflowed a sum.
    @Test func implausibleUsageIsNoReport() throws {
        func usage(_ prompt: String, _ completion: String) -> TokenUsage? {
            let answer =
                #"{"choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":\#(prompt),"completion_tokens":\#(completion)}}"#
            return CompletionChunk.parse(Array(answer.utf8))?.usage
        }
        #expect(usage("12", "3") == TokenUsage(promptTokens: 12, completionTokens: 3))
        #expect(usage("1000000000000000", "3") == nil)
        #expect(usage("12", "-5") == nil)
        #expect(usage("9223372036854775807", "9223372036854775807") == nil)
        #expect(usage("2147483647", "0") == TokenUsage(promptTokens: 2_147_483_647, completionTokens: 0))
        // The answer itself is still read.
        #expect(
            CompletionChunk.parse(
                Array(#"{"choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":-5}}"#.utf8)
            )?.choices?.first?.content == "hi"
        )
        let event = Array(#"data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":-5}}"#.utf8) + Array("\n\n".utf8)
        #expect(StreamEvent.classify(event) == .other)
    }

    /// A whole answer is read off its outline: whether it is a completion, and its usage, without a tree of its values.
    @Test func aWholeAnswersUsageIsReadOffItsOutline() {
        func read(_ text: String) -> TokenUsage?? { Array(text.utf8).withUnsafeBufferPointer { CompletionChunk.wholeAnswerUsage($0) } }
        let numbers = "[" + Array(repeating: "0", count: 100_000).joined(separator: ",") + "]"
        let answer = #"{"choices":[{"index":0,"message":{"content":"hi"}}],"extra":\#(numbers),"usage":{"prompt_tokens":12,"completion_tokens":3}}"#
        #expect(read(answer) == .some(TokenUsage(promptTokens: 12, completionTokens: 3)))
        #expect(read(#"{"choices":[]}"#) == .some(nil), "a completion without usage")
        #expect(read(#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":-5}}"#) == .some(nil), "usage no engine makes")
        for notACompletion in ["", "not json", #"{"object":"error"}"#, #"{"choices":{}}"#, #"[{"choices":[]}]"#, #"{"choices":[]} trailing"#] {
            #expect(read(notACompletion) == nil, "\(notACompletion)")
        }
    }
}
