import Foundation
import Testing

@testable import HearthCore

/// The native JSON parser and writer (`JSONValue+Native`) against Foundation's, which they replace on every hot path:
/// the same value, or both refuse, for every fuzz corpus and a table of edge cases; and what the writer writes reads
/// back as the same value.
struct JSONNativeTests {
    /// Whether the two parsers agree on `bytes`: the same value, or both refuse. The native one may refuse what is not
    /// JSON by RFC 8259 that Foundation lets through (a control byte or bytes that are not UTF-8 in an object key, a NUL
    /// after the value, a number with leading zeros inside an object).
    static func agree(_ bytes: [UInt8]) -> String? {
        let native = try? JSONValue.parse(bytes, maxDepth: 512)
        let foundation = JSONValue.foundationParse(bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        let notJSON =
            String(validating: bytes, as: UTF8.self) == nil || bytes.contains { $0 < 0x20 && ![0x09, 0x0A, 0x0D].contains($0) }
            || text.contains(/[:\[,]\s*-?0[0-9]/)
        if native == nil, foundation != nil, notJSON { return nil }
        guard native == foundation else {
            return
                "\(String(decoding: bytes.prefix(80), as: UTF8.self)): native \(String(describing: native).prefix(100)), Foundation \(String(describing: foundation).prefix(100))"
        }
        return nil
    }

    @Test(arguments: [
        "{}", "[]", "null", "true", "false", "0", "-0", "1", "-1", "1.5", "1.0", "1e2", "1E+2", "1e-2", "-1.25e-3", "1.5e300",
        "9223372036854775807", "-9223372036854775808", "9223372036854775808", "12345678901234567890", "1e18", "1e19", "0.1",
        "01", "1.", ".5", "+1", "-", "1e", "1e+", "--1", "0x10", "NaN", "Infinity", "1e400",
        #""a""#, #""\u00e9\n\t\"\\\/""#, #""\ud83d\ude00""#, #""\ud83d""#, #""\ude00""#, #""\ud83dx""#, #""\x""#, #""\u12""#,
        "\"tab\there\"", "\"line\nbreak\"", #""é""#, "[1,]", "[1,,]", "[,1]", "[,]", "{\"a\":1,}", "{,}", "{\"a\" 1}", "{a:1}", "{\"a\":1,\"a\":2}",
        " \n\t{ \"a\" : [ 1 , 2 ] } \r\n", "{} {}", "[1] x", "", " ", "nul", "truex", "[[[[]]]]", "{\"\":\"\"}",
        #"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":16,"temperature":0.7}"#,
    ])
    func agreesWithFoundationOn(_ text: String) {
        if let disagreement = Self.agree(Array(text.utf8)) { Issue.record(Comment(rawValue: disagreement)) }
    }

    @Test func agreesWithFoundationOnInvalidUTF8AndControlBytes() {
        for bytes: [UInt8] in [[0x22, 0xFF, 0x22], [0x22, 0xC3, 0x22], [0x22, 0x01, 0x22], [0xEF, 0xBB, 0xBF, 0x31], [0x5B, 0x00, 0x5D]] {
            if let disagreement = Self.agree(bytes) { Issue.record(Comment(rawValue: disagreement)) }
        }
    }

    /// Every input the fuzzers kept, through both parsers.
    @Test func agreesWithFoundationOnEveryFuzzCorpus() async throws {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fuzz")
        var checked = 0
        var disagreements: [String] = []
        for target in ["completion", "report", "ollama", "catalog", "sse"] {
            for folder in ["corpus", "regressions"] {
                let directory = fuzz.appendingPathComponent(target).appendingPathComponent(folder)
                for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] {
                    let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(name)))
                    checked += 1
                    await pace(checked, every: 32)
                    if let disagreement = Self.agree(bytes) { disagreements.append(disagreement) }
                }
            }
        }
        #expect(checked > 1000, "the corpora are missing")
        #expect(disagreements.isEmpty, "\(disagreements.count) of \(checked) disagree, e.g. \(disagreements.prefix(5))")
    }

    @Test func whatTheWriterWritesReadsBackTheSame() throws {
        let value: JSONValue = [
            "s": "quote \" backslash \\ slash / newline \n tab \t bell \u{07} é 😀", "i": -42, "n": 0.1, "big": 1.5e300, "whole": 3.0,
            "a": [nil, true, false, [:], []], "o": ["z": 1, "a": 2],
        ]
        for sorted in [false, true] {
            let text = value.serialized(sortedKeys: sorted)
            #expect(try JSONValue.parse(text) == JSONValue.parse(Array(try JSONEncoder().encode(value))))
            #expect(JSONValue.foundationParse(text) == (try JSONValue.parse(text)))
        }
        #expect(
            String(decoding: JSONValue.object(["b": 1, "a": ["d": 2, "c": 3]]).serialized(sortedKeys: true), as: UTF8.self)
                == #"{"a":{"c":3,"d":2},"b":1}"#
        )
        #expect(String(decoding: JSONValue.string("\u{01}").serialized(), as: UTF8.self) == #""\u0001""#)
        #expect(JSONValue.number(.nan).serialized() == Array("null".utf8))
    }

    @Test func refusesNestingPastTheLimitWithoutRecursingFurther() {
        let deep = Array(String(repeating: "[", count: 100_000).utf8)
        #expect(throws: JSONValue.ParseError.tooDeep(limit: 64)) { try JSONValue.parse(deep) }
        let fine = Array((String(repeating: "[", count: 64) + String(repeating: "]", count: 64)).utf8)
        #expect((try? JSONValue.parse(fine)) != nil)
    }

    /// The streaming path's event reader against `JSONDecoder`'s, on engine-shaped events and every SSE corpus event.
    @Test func readsEventsAsTheDecoderDid() async throws {
        func summary(_ chunk: CompletionChunk?) -> String {
            guard let chunk else { return "nil" }
            let choices = chunk.choices.map { $0.map { "\($0.content ?? "-")|\($0.finishReason ?? "-")" }.joined(separator: ";") } ?? "none"
            return "\(choices) \(chunk.usage.map { "\($0.promptTokens)/\($0.completionTokens)" } ?? "no usage")"
        }
        var payloads: [String] = [
            #"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
            #"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
            #"{"choices":[{"text":" a","finish_reason":"length"}]}"#, #"{"choices":[{"message":{"content":"whole"}}]}"#,
            #"{"choices":"x"}"#, #"{"usage":{"prompt_tokens":"5"}}"#, #"{"usage":{"prompt_tokens":1.5,"completion_tokens":1}}"#,
            #"{"choices":[{"delta":{"content":3}}]}"#, #"[1]"#, "", #"{"choices":[1]}"#, #"{"choices":null,"usage":null}"#,
        ]
        let sse = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fuzz/sse/corpus")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: sse.path)) ?? [] {
            let text = String(decoding: try Data(contentsOf: sse.appendingPathComponent(name)), as: UTF8.self)
            payloads += text.components(separatedBy: "\n\n").compactMap { $0.hasPrefix("data: ") ? String($0.dropFirst(6)) : nil }
        }
        #expect(payloads.count > 100)
        var disagreements: [String] = []
        for (index, payload) in payloads.enumerated() {
            await pace(index)
            let native = summary(CompletionChunk.parse(Array(payload.utf8)))
            let decoded = summary(try? JSONDecoder().decode(CompletionChunk.self, from: Data(payload.utf8)))
            // As above: the native reader may refuse control bytes Foundation lets through in keys.
            let controlBytes = payload.utf8.contains { $0 < 0x20 && ![0x09, 0x0A, 0x0D].contains($0) }
            if native != decoded, !(native == "nil" && controlBytes) { disagreements.append("\(payload.prefix(80)): \(native) vs \(decoded)") }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count) of \(payloads.count), e.g. \(disagreements.prefix(3))")
    }
}
