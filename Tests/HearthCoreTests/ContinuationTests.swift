import Testing

@testable import HearthCore

struct ContinuationTests {
    private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func theMarkerTellsCleanHeldAndGappedEventsApart() {
        var marker = TokenMarker()
        #expect(marker.mark(text: bytes("Hel"), token: (7, bytes("Hel"))) == TokenMark(token: 7, kind: .clean))
        // A token that may start a stop string comes with no text; the next event carries both.
        #expect(marker.mark(text: [], token: (8, bytes(" wo"))) == TokenMark(token: 8, kind: .held))
        #expect(marker.mark(text: bytes(" world"), token: (9, bytes("rld"))) == TokenMark(token: 9, kind: .clean))
        // "é" split over two byte tokens: the engine reports only the second, with the whole character as text.
        #expect(marker.mark(text: bytes("é"), token: (10, [0xA9])) == TokenMark(token: 10, kind: .gap))
        #expect(marker.mark(text: bytes("!"), token: (11, bytes("!"))) == TokenMark(token: 11, kind: .clean))
        // Text the engine said nothing about.
        #expect(marker.mark(text: bytes("?"), token: nil) == TokenMark(token: nil, kind: .gap))
        #expect(marker.mark(text: [], token: nil) == nil)
    }

    @Test func aMarkLineReadsBackAndMalformedOnesAreIgnored() throws {
        for mark in [
            TokenMark(token: 0, kind: .clean), TokenMark(token: 49151, kind: .held), TokenMark(token: nil, kind: .gap),
            TokenMark(token: Int32.max, kind: .clean),
        ] {
            let event = Array((mark.line + "data: {}\n\n").utf8)
            let parsed = try #require(event.withUnsafeBytes { TokenMark.parse($0) })
            #expect(parsed.mark == mark)
            #expect(parsed.length == mark.line.utf8.count)
        }
        for line in [
            ": hearth-token 5 fresh\n", ": hearth-token -5 clean\n", ": hearth-token 5 clean extra\n", ": hearth-token 5 clean",
            ": hearth-token 99999999999 clean\n", ": other 5 clean\n", "data: {}\n", ": hearth-token  clean\n",
            ": hearth-token 2147483648 clean\n", ": hearth-token +5 clean\n", ": hearth-token 5  clean\n", ": hearth-token 5 cleaner\n",
            ": hearth-token 5 clea\n", ": hearth-token 5 \n", ": hearth-token - gap \n", ": hearth-token -- gap\n", ": hearth-token 5\n",
        ] {
            #expect(Array(line.utf8).withUnsafeBytes { TokenMark.parse($0) } == nil, "\(line)")
        }
    }

    @Test func aGenerationKeepsTokenIdsAndTheTextOfGapsOnly() {
        var generation = Generation()
        var decoded = 0
        func text(_ value: String) -> () -> String? {
            {
                decoded += 1
                return value
            }
        }
        generation.observe(TokenMark(token: 1, kind: .clean), text: text("unused"))
        generation.observe(TokenMark(token: 2, kind: .held), text: text("unused"))
        generation.observe(TokenMark(token: 3, kind: .clean), text: text("unused"))
        generation.observe(TokenMark(token: 4, kind: .held), text: text("unused"))
        // A gap's text stands for everything since the last clean event, the held token included.
        generation.observe(TokenMark(token: 5, kind: .gap), text: text(" café"))
        generation.observe(TokenMark(token: nil, kind: .gap), text: text("!"))
        generation.observe(TokenMark(token: 6, kind: .clean), text: text("unused"))
        #expect(decoded == 2)
        #expect(generation.segments == [.tokens([1, 2, 3]), .text(" café!"), .tokens([6])])
        #expect(generation.promptPieces == [1, 2, 3, " café!", 6])
        #expect(generation.tokens == 6)
        #expect(!generation.abandoned)
        // A spot check scores the ids up to the first gap; the vocabulary holds every id reported.
        #expect(generation.claimedTokens == [1, 2, 3])
        #expect(generation.reportedTokens == [1, 2, 3, 6])
        var gapFirst = Generation()
        gapFirst.observe(TokenMark(token: 9, kind: .gap)) { "é" }
        gapFirst.observe(TokenMark(token: 4, kind: .clean)) { nil }
        #expect(gapFirst.claimedTokens == [])
        #expect(gapFirst.reportedTokens == [4])
        // What a spot check scores: the ids while there are any, the text of an answer that carried none (an owner's
        // own server marks every event as a gap).
        #expect(generation.spotCheckClaim == .tokens([1, 2, 3]))
        #expect(gapFirst.spotCheckClaim == .tokens([]))
        var textOnly = Generation()
        textOnly.observe(TokenMark(token: nil, kind: .gap)) { "Paris is" }
        textOnly.observe(TokenMark(token: nil, kind: .gap)) { " the capital." }
        #expect(textOnly.spotCheckClaim == .text("Paris is the capital."))
    }

    @Test func aGenerationPastItsLimitOrWithAnUnreadableGapIsAbandoned() {
        var large = Generation(limit: 16)
        for token in 0..<4 { large.observe(TokenMark(token: Int32(token), kind: .clean)) { nil } }
        #expect(!large.abandoned)
        large.observe(TokenMark(token: 9, kind: .clean)) { nil }
        #expect(large.abandoned)
        #expect(large.promptPieces.isEmpty)

        var unreadable = Generation()
        unreadable.observe(TokenMark(token: 1, kind: .gap)) { nil }
        #expect(unreadable.abandoned)
        var nameless = Generation()
        nameless.observe(TokenMark(token: nil, kind: .clean)) { nil }
        #expect(nameless.abandoned)
    }

    @Test func aContinuationRequestReadsBackAndRefusesPiecesThatAreNotTokensOrText() {
        let request = ContinuationRequest(generated: [1, "two", 3], id: "chatcmpl-1", created: 42)
        #expect(ContinuationRequest(request.json) == request)
        for generated: JSONValue in [[-1], [4_294_967_296], [1.5], [["nested"]], [.null], "text"] {
            var json = request.json
            json["generated"] = generated
            #expect(ContinuationRequest(json) == nil, "\(generated)")
        }
        var missing = request.json
        missing["id"] = nil
        #expect(ContinuationRequest(missing) == nil)
        #expect(ContinuationRequest(nil) == nil)
    }

    @Test func onlyASingleTextAnswerCanBeContinued() {
        let chat: JSONValue = ["messages": [["role": "user", "content": "hi"]]]
        #expect(Continuation.refusal(for: chat, chat: true) == nil)
        var tools = chat
        tools["tools"] = [["type": "function", "function": ["name": "f"]]]
        #expect(Continuation.refusal(for: tools, chat: true) != nil)
        var format = chat
        format["response_format"] = ["type": "json_object"]
        #expect(Continuation.refusal(for: format, chat: true) != nil)
        format["response_format"] = ["type": "text"]
        #expect(Continuation.refusal(for: format, chat: true) == nil)
        var several = chat
        several["n"] = 2
        #expect(Continuation.refusal(for: several, chat: true) != nil)

        #expect(Continuation.refusal(for: ["prompt": "Once"], chat: false) == nil)
        #expect(Continuation.refusal(for: ["prompt": [1, 2, 3]], chat: false) == nil)
        #expect(Continuation.refusal(for: ["prompt": ["one", "two"]], chat: false) != nil)
        #expect(Continuation.refusal(for: ["prompt": []], chat: false) != nil)
    }
}
