import Foundation
import Testing

@testable import HearthCore

struct IdentifierTests {
    @Test func nodeIDsAreSixtyFourLowercaseHexCharacters() {
        #expect(NodeID(String(repeating: "a", count: 64)) != nil)
        #expect(NodeID(String(repeating: "A", count: 64)) == nil)
        #expect(NodeID(String(repeating: "a", count: 63)) == nil)
        #expect(NodeID(String(repeating: "g", count: 64)) == nil)
        let random = NodeID.random()
        #expect(random.short.count == 12)
        #expect(random != NodeID.random())
    }

    @Test func decodingRefusesMalformedIdentifiers() {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([NodeID].self, from: Data(#"["xyz"]"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([ModelID].self, from: Data(#"["has space"]"#.utf8)) }
        #expect(throws: DecodingError.self) { try JSONDecoder().decode([SHA256Digest].self, from: Data(#"["00"]"#.utf8)) }
    }

    @Test func jsonValueRoundTripsEveryKind() throws {
        let value: JSONValue = ["a": [1, 2.5, "s", true, nil, ["b": [:]]]]
        let decoded = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(value))
        #expect(decoded == value)
        #expect(decoded["a"]?[1]?.doubleValue == 2.5)
        #expect(decoded["a"]?[9] == nil)
    }

    @Test func errorEnvelopeAlwaysHasParamAndCode() throws {
        let json = String(decoding: OpenAIErrorBody(message: "m", type: "t").json, as: UTF8.self)
        #expect(json.contains(#""param":null"#))
        #expect(json.contains(#""code":null"#))
    }

    /// The envelope as sent: OpenAI's order of members every time, its text escaped, and what it says read back the
    /// same by a JSON decoder.
    @Test func errorEnvelopeIsWrittenInOpenAIsOrder() throws {
        let plain = OpenAIErrorBody(message: "m", type: "t")
        #expect(String(decoding: plain.json, as: UTF8.self) == #"{"error":{"message":"m","type":"t","param":null,"code":null}}"#)
        let awkward = OpenAIErrorBody(
            message: "a \"quoted\" line\nwith \\ and \u{1}, é",
            type: "invalid_request_error",
            param: "n",
            code: "invalid_value"
        )
        #expect(
            String(decoding: awkward.json, as: UTF8.self)
                == #"{"error":{"message":"a \"quoted\" line\nwith \\ and \u0001, é","type":"invalid_request_error","param":"n","code":"invalid_value"}}"#
        )
        #expect(try JSONDecoder().decode(OpenAIErrorBody.self, from: Data(awkward.json)) == awkward)
        #expect(try JSONDecoder().decode(OpenAIErrorBody.self, from: Data(plain.json)) == plain)
    }
}
