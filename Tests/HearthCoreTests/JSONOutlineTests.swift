import Foundation
import Testing

@testable import HearthCore

/// `JSONOutline`: the byte ranges of an object's members, which the streaming paths read and splice instead of parsing
/// each event into a `JSONValue`.
struct JSONOutlineTests {
    static func outline(_ text: String) -> (JSONOutline?, [UInt8]) {
        let bytes = Array(text.utf8)
        return (bytes.withUnsafeBufferPointer { JSONOutline(object: $0) }, bytes)
    }

    static func text(_ bytes: [UInt8], _ range: Range<Int>) -> String {
        String(decoding: bytes[range], as: UTF8.self)
    }

    @Test func findsEachMembersKeyAndValueWhateverTheSpacingAndNesting() throws {
        let source = #"  { "a" : [1, {"x": "}"}, "]"] ,"b":"q\"\\" , "c":{"d":null},"e":-1.5e+3,"a":true }  "#
        let (found, bytes) = Self.outline(source)
        let outline = try #require(found)
        #expect(outline.members.map { Self.text(bytes, $0.key) } == ["a", "b", "c", "e", "a"])
        #expect(outline.members.map { Self.text(bytes, $0.value) } == [#"[1, {"x": "}"}, "]"]"#, #""q\"\\""#, #"{"d":null}"#, "-1.5e+3", "true"])
        #expect(Self.text(bytes, outline.range).hasPrefix("{") && Self.text(bytes, outline.range).hasSuffix("}"))
        bytes.withUnsafeBufferPointer { buffer in
            #expect(outline.isWhole(of: buffer))
            // The first of a repeated key, as the parser keeps it.
            #expect(outline.member("a", in: buffer).map { Self.text(bytes, $0.value) } == #"[1, {"x": "}"}, "]"]"#)
            #expect(outline.member("z", in: buffer) == nil)
            let elements = JSONOutline.elements(ofArray: outline.members[0].value, in: buffer)
            #expect(elements?.map { Self.text(bytes, $0) } == ["1", #"{"x": "}"}"#, #""]""#])
        }
    }

    @Test func refusesWhatIsNoObjectOrNotWellFormed() {
        let refused = [
            "", "[]", "\"s\"", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1 \"b\":2}", "{\"a\":[1,}", "{,}", "{\"a\":[,]}", "{\"a\":\"open}",
            "{\"a\":tru}", "{\"a\":\"raw \n newline\"}", "{a:1}", "{\"a\":1]",
        ]
        for text in refused { #expect(Self.outline(text).0 == nil, "\(text)") }
        let deep = "{\"a\":" + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + "}"
        #expect(Self.outline(deep).0 == nil, "nesting past the limit")
        // An object followed by more is outlined, and is not the whole text.
        let (trailing, bytes) = Self.outline(#"{"a":1} x"#)
        #expect(bytes.withUnsafeBufferPointer { trailing?.isWhole(of: $0) } == false)
    }

    @Test func removingAMemberOrSplicingAValueLeavesTheJSONOneExpects() throws {
        let source = #"{"a":1, "b":{"c":2},"d":"x"}"#
        let (found, bytes) = Self.outline(source)
        let outline = try #require(found)
        func after(_ edits: [(range: Range<Int>, with: [UInt8])]) throws -> JSONValue {
            try JSONValue.parse(bytes.withUnsafeBufferPointer { JSONOutline.splice($0, edits) })
        }
        #expect(try after([(outline.removal(of: 0), [])]) == ["b": ["c": 2], "d": "x"])
        #expect(try after([(outline.removal(of: 1), [])]) == ["a": 1, "d": "x"])
        #expect(try after([(outline.removal(of: 2), [])]) == ["a": 1, "b": ["c": 2]])
        // Edits in any order, a replacement and an insertion before the closing brace.
        let end = outline.range.upperBound - 1
        let edited = try after([(end..<end, Array(#","e":null"#.utf8)), (outline.members[0].value, Array("[7]".utf8))])
        #expect(edited == ["a": [7], "b": ["c": 2], "d": "x", "e": nil])
        let (only, single) = Self.outline(#"{"k":"v"}"#)
        #expect(try JSONValue.parse(single.withUnsafeBufferPointer { JSONOutline.splice($0, [(only!.removal(of: 0), [])]) }) == [:])
    }

    @Test func readsTheFirstChoicesTextAsTheParserDoes() {
        let events: [(String, String?)] = [
            (#"{"choices":[{"delta":{"content":"a\nb \u00e9 \"q\""}},{"delta":{"content":"2nd"}}]}"#, "a\nb é \"q\""),
            (#"{"choices":[{"text":" time","index":0}]}"#, " time"),
            (#"{"choices":[{"message":{"content":"whole"}}]}"#, "whole"),
            (#"{"choices":[{"delta":{"role":"assistant","content":null}}]}"#, nil),
            (#"{"choices":[{"delta":{"content":null},"text":"t"}]}"#, "t"),
            (#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#, nil),
            (#"{"choices":[{"delta":{"content":""}}]}"#, ""),
            ("not json", nil),
            // Plain ASCII is read as it lies; escapes, bytes beyond ASCII and raw control bytes go through the parser.
            (#"{"choices":[{"delta":{"content":" tok"}}]}"#, " tok"),
            (#"{"choices":[{"text":"a\/b \\ c"}]}"#, "a/b \\ c"),
            ("{\"choices\":[{\"text\":\"caf\u{e9} \u{1F525}\"}]}", "caf\u{e9} \u{1F525}"),
            ("{\"choices\":[{\"text\":\"a\u{7F}b\"}]}", "a\u{7F}b"),
            ("{\"choices\":[{\"text\":\"a\tb\"}]}", nil),
        ]
        for (event, expected) in events {
            let bytes = Array(event.utf8)
            #expect(bytes.withUnsafeBufferPointer { CompletionChunk.firstText(in: $0) } == expected, "\(event)")
            if let parsed = CompletionChunk.parse(bytes) { #expect(parsed.choices?.first?.content == expected, "\(event)") }
        }
    }

    /// Every input the fuzzers kept: wherever the parser reads an object, the outline finds the same members with the
    /// same values, and the first choice's text is read alike.
    @Test func agreesWithTheParserOnEveryFuzzCorpus() throws {
        let fuzz = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("fuzz")
        var objects = 0
        var disagreements: [String] = []
        for target in ["completion", "report", "ollama", "catalog", "sse"] {
            let directory = fuzz.appendingPathComponent(target).appendingPathComponent("corpus")
            for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] {
                let bytes = Array(try Data(contentsOf: directory.appendingPathComponent(name)))
                guard case .object(let members)? = try? JSONValue.parse(bytes) else { continue }
                objects += 1
                let agrees = bytes.withUnsafeBufferPointer { buffer -> Bool in
                    guard let outline = JSONOutline(object: buffer), outline.isWhole(of: buffer) else { return false }
                    for member in outline.members {
                        guard case .string(let key)? = try? JSONValue.parse(Array("\"".utf8) + buffer[member.key] + Array("\"".utf8)),
                            let value = members[key]
                        else { return false }
                        // A repeated key: the parser keeps the first.
                        if outline.members.first(where: { buffer[$0.key].elementsEqual(buffer[member.key]) })?.start != member.start { continue }
                        guard (try? JSONValue.parse(buffer[member.value])) == value else { return false }
                    }
                    let text = CompletionChunk.parse(bytes).map { $0.choices?.first?.content }
                    return text == nil || text! == CompletionChunk.firstText(of: outline, in: buffer)
                }
                if !agrees { disagreements.append("\(target)/\(name)") }
            }
        }
        #expect(objects > 300, "the corpora are missing")
        #expect(disagreements.isEmpty, "\(disagreements.count) of \(objects) disagree, e.g. \(disagreements.prefix(5))")
    }
}
