import HearthCore
import Testing

struct JoinAddressTests {
    let id = String(repeating: "ab", count: 32)

    @Test func parsesHostPortAndGatewayID() throws {
        let join = try JoinAddress(parsing: "gw.example.org:7070#\(id)")
        #expect(join.host == "gw.example.org")
        #expect(join.port == 7070)
        #expect(join.gatewayID.rawValue == id)
        #expect(join.description == "gw.example.org:7070#\(id)")
    }

    @Test func bracketsIPv6Hosts() throws {
        let join = try JoinAddress(parsing: "[::1]:7070#\(id)")
        #expect(join.host == "::1")
        #expect(join.description == "[::1]:7070#\(id)")
        #expect(try JoinAddress(parsing: join.description) == join)
    }

    @Test func refusesEveryMalformedPartWithAMessage() {
        let bad = [
            "gw:7070",  // no id
            "gw:7070#\(id.uppercased())",  // not lowercase hex
            "gw:7070#\(id.dropLast())",  // too short
            "gw#\(id)",  // no port
            ":7070#\(id)",  // no host
            "gw:0#\(id)",  // port out of range
            "gw:65536#\(id)",
            "gw:http#\(id)",
            "http://gw:7070#\(id)",  // a URL is not a host
        ]
        for text in bad {
            #expect(throws: JoinAddressError.self, "\(text)") { try JoinAddress(parsing: text) }
        }
    }
}
