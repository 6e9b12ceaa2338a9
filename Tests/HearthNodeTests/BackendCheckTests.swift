import Foundation
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthNode

/// What the node decides from an owner's server's answers, without the server (`BackendMonitorService` asks it).
struct BackendCheckTests {
    let pinned = SHA256Digest(hex: String(repeating: "ab", count: 32))!
    let other = SHA256Digest(hex: String(repeating: "cd", count: 32))!

    @Test func readsOllamasBlobFromTheModelfilesFromLineNotItsComment() {
        let show: JSONValue = [
            "modelfile": .string(
                "# FROM smollm2:latest\n\nFROM /usr/share/ollama/.ollama/models/blobs/sha256-\(pinned.hex)\nFROM /x/blobs/sha256-\(other.hex)\nTEMPLATE x"
            )
        ]
        #expect(BackendCheck.ollamaBlob(show)?.digest == pinned)
        #expect(BackendCheck.ollamaBlob(show)?.path == "/usr/share/ollama/.ollama/models/blobs/sha256-\(pinned.hex)")
        #expect(BackendCheck.ollamaBlob(["modelfile": "FROM ./model.gguf"]) == nil)
        #expect(BackendCheck.ollamaBlob(["modelfile": "FROM /blobs/sha256-abc"]) == nil, "a short digest is none")
        #expect(BackendCheck.ollamaBlob(["error": "model not found"]) == nil)
    }

    @Test func listsModelsAndLoadedFiles() {
        #expect(BackendCheck.listedModels(["object": "list", "data": [["id": "a"], ["id": "b"], ["object": "model"]]]) == ["a", "b"])
        #expect(BackendCheck.listedModels(["models": []]) == nil)
        #expect(BackendCheck.loadedFile(["model_path": "/m/x.gguf"]) == "/m/x.gguf")
        #expect(BackendCheck.loadedFile(["model_path": ""]) == nil)
    }

    @Test func verifiesOnlyThePinnedFileAndRefusesAnother() {
        // Ollama's word for its blob, said as such; the blob hashed by this node, said as such; a blob named as the pinned
        // one whose bytes are another file's, refused.
        guard case .verified(let word) = BackendCheck.verdict(evidence: .ollamaBlob(pinned, hashed: nil), pinned: pinned),
            case .verified(let hashed) = BackendCheck.verdict(evidence: .ollamaBlob(pinned, hashed: pinned), pinned: pinned),
            case .refused(let misnamed) = BackendCheck.verdict(evidence: .ollamaBlob(pinned, hashed: other), pinned: pinned)
        else {
            Issue.record("the pinned blob was judged wrongly")
            return
        }
        #expect(word.contains("server's word") && !word.contains("hashed by this node,"))
        #expect(hashed.contains("hashed by this node"))
        #expect(misnamed.contains(other.hex) && misnamed.contains("another file"))
        guard case .refused(let reason) = BackendCheck.verdict(evidence: .ollamaBlob(other, hashed: other), pinned: pinned) else {
            Issue.record("another blob was not refused")
            return
        }
        #expect(reason.contains(other.hex) && reason.contains(pinned.hex))
        guard case .verified = BackendCheck.verdict(evidence: .file(path: "/m", sha256: pinned), pinned: pinned),
            case .refused = BackendCheck.verdict(evidence: .file(path: "/m", sha256: other), pinned: pinned)
        else {
            Issue.record("a hashed file was judged wrongly")
            return
        }
        // What cannot be checked is served only as unverified, saying why.
        guard case .unverified(let unreadable) = BackendCheck.verdict(evidence: .file(path: "/elsewhere/m.gguf", sha256: nil), pinned: pinned),
            case .unverified(let silent) = BackendCheck.verdict(evidence: .none, pinned: pinned)
        else {
            Issue.record("an unchecked file was not unverified")
            return
        }
        #expect(unreadable.contains("m.gguf") && !unreadable.contains("/elsewhere"), "the owner's folders are not reported")
        #expect(silent.contains("no way to check"))
    }

    @Test func aWholeAnswerNamesTheCatalogModelAgain() throws {
        let answer = ByteBuffer(string: #"{"id":"x","model":"smollm2:135m","choices":[]}"#)
        let renamed = EngineCall.renamed(answer, model: DefaultModel.id)
        let json = try JSONValue.parse(renamed.readableBytesView)
        #expect(json["model"]?.stringValue == DefaultModel.id.rawValue)
        #expect(json["id"] == "x")
        // Not JSON, or no model: as it came.
        #expect(EngineCall.renamed(ByteBuffer(string: "oops"), model: DefaultModel.id) == ByteBuffer(string: "oops"))
        let nameless = ByteBuffer(string: #"{"id":"x","choices":[]}"#)
        #expect(EngineCall.renamed(nameless, model: DefaultModel.id) == nameless)
        // Only the name changes: the server's spelling of the rest (numbers, order, spacing) reaches the client.
        let spelled = ByteBuffer(string: #"{ "z": 1.50, "model" : "smollm2:135m", "a": [1e-5, "\u00e9"] }"#)
        let name = String(decoding: JSONValue.string(DefaultModel.id.rawValue).serialized(), as: UTF8.self)
        #expect(
            String(buffer: EngineCall.renamed(spelled, model: DefaultModel.id))
                == #"{ "z": 1.50, "model" : \#(name), "a": [1e-5, "\u00e9"] }"#
        )
        // `model` twice, or a key spelled with escapes: no spelling of it keeps the server's name.
        for tricky in [#"{"model":"a","model":"b"}"#, #"{"mod\u0065l":"a"}"#, #"{"model":"a","mod\u0065l":"b"}"#] {
            let renamed = EngineCall.renamed(ByteBuffer(string: tricky), model: DefaultModel.id)
            #expect(try JSONValue.parse(renamed.readableBytesView)["model"]?.stringValue == DefaultModel.id.rawValue, "\(tricky)")
            let text = String(buffer: renamed)
            #expect(!text.contains(#""a""#) && !text.contains(#""b""#), "\(tricky) became \(text)")
        }
    }

    @Test func theOwnersServerGetsItsOwnNameAndNoLlamaCppExtensions() throws {
        let body: JSONValue = [
            "model": .string(DefaultModel.id.rawValue), "stream": true, "timings_per_token": true,
            "stream_options": ["include_usage": true], "messages": [["role": "user", "content": "hi"]],
        ]
        let call = try EngineCall.backend(path: "/v1/chat/completions", body: body, name: "smollm2:135m", model: DefaultModel.id)
        let sent = try JSONValue.parse(call.body.readableBytesView)
        #expect(sent["model"] == "smollm2:135m")
        #expect(sent["timings_per_token"] == nil)
        #expect(sent["stream_options"]?["include_usage"] == true)
        #expect(sent["logprobs"] == nil, "no log-probabilities are asked of a server that may not give them")
        #expect(call.rewriter != nil && call.answerModel == nil)
        // A continuation needs llama.cpp's token prompt: refused with 503, so the gateway tries another node.
        var continued = body
        continued[Continuation.field] = ["id": "x", "created": 1, "generated": []]
        #expect(throws: APIFailure.self) { try EngineCall.backend(path: "/v1/chat/completions", body: continued, name: "n", model: DefaultModel.id) }
    }
}

/// What a stream without a usage event is worth on the node's receipt: counted as the gateway counts it
/// (`StreamTokenCount`, shared), so the receipt is not refused for claiming more.
struct UsageTapTests {
    static func stream(_ events: [String], done: Bool) -> ByteBuffer {
        ByteBuffer(string: events.map { "data: \($0)\n\n" }.joined() + (done ? "data: [DONE]\n\n" : ""))
    }

    @Test func countsOneTokenPerEventAfterTheFirstAndNotDone() {
        let events = [
            #"{"choices":[{"delta":{"role":"assistant"}}]}"#, #"{"choices":[{"delta":{"content":"a"}}]}"#,
            #"{"choices":[{"delta":{"content":"b"}}]}"#,
        ]
        for done in [false, true] {
            var tap = UsageTap(streaming: true)
            // In pieces that split events, as they come off a socket.
            let whole = Self.stream(events, done: done)
            var rest = whole
            while rest.readableBytes > 0 { tap.observe(rest.readSlice(length: min(7, rest.readableBytes))!) }
            #expect(tap.usage == nil)
            #expect(tap.partialUsage == TokenUsage(promptTokens: 0, completionTokens: 2), "done: \(done)")
        }
        // The engine's own count wins whenever it came.
        var reported = UsageTap(streaming: true)
        reported.observe(Self.stream(events + [#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}"#], done: true))
        #expect(reported.partialUsage == TokenUsage(promptTokens: 5, completionTokens: 9))
        // A last event the stream never terminated counts once the stream ends.
        var cut = UsageTap(streaming: true)
        cut.observe(
            ByteBuffer(string: Self.stream(events, done: false).getString(at: 0, length: Self.stream(events, done: false).readableBytes - 2)!)
        )
        #expect(cut.events == 2)
        cut.finish()
        #expect(cut.events == 3 && cut.partialUsage == TokenUsage(promptTokens: 0, completionTokens: 2))
    }

    /// The relay's way: the tap counts the events the rewriter reports as it writes them (with their token marks), as
    /// it would count the rewritten bytes; a rewrite that fails counts none of the events it had reported.
    @Test func countsTheEventsTheRewriterWritesAndNoneOfAFailedRewrite() throws {
        let events = [
            #"{"choices":[{"delta":{"role":"assistant"}}]}"#, #"{"choices":[{"delta":{"content":"a"}}]}"#,
            #"{"choices":[{"delta":{"content":"b"}}]}"#, #"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#,
        ]
        var rewriter = EngineStreamRewriter(shape: .init(chat: true, keepLogprobs: false))
        var relayed = UsageTap(streaming: true)
        var output = ByteBuffer()
        var rest = Self.stream(events, done: true)
        while rest.readableBytes > 0 {
            let piece = rest.readSlice(length: min(11, rest.readableBytes))!
            var written = try relayed.counting { try rewriter.rewrite(piece, eachEvent: $0) }
            output.writeBuffer(&written)
        }
        var reread = UsageTap(streaming: true)
        reread.observe(output)
        #expect(relayed.events == 3 && relayed.events == reread.events)
        #expect(relayed.usage == TokenUsage(promptTokens: 4, completionTokens: 2) && relayed.usage == reread.usage)

        struct Broken: Error {}
        var failed = UsageTap(streaming: true)
        #expect(throws: Broken.self) {
            try failed.counting { eachEvent in
                Self.stream(events, done: false).withUnsafeReadableBytes { eachEvent($0) }
                throw Broken()
            }
        }
        #expect(failed.events == 0 && failed.usage == nil)
    }
}
