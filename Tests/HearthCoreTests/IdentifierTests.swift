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
        let json = String(decoding: try JSONEncoder().encode(OpenAIErrorBody(message: "m", type: "t")), as: UTF8.self)
        #expect(json.contains(#""param":null"#))
        #expect(json.contains(#""code":null"#))
    }
}
