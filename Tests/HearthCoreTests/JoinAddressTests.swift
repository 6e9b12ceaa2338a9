import Testing

@testable import HearthCore

struct JoinAddressTests {
    let id = String(repeating: "ab", count: 32)

    @Test func parsesHostPortAndGatewayID() throws {
        let join = try JoinAddress(parsing: "gw.example.org:7070#\(id)")
        #expect(join.endpoints == [JoinAddress.Endpoint(host: "gw.example.org", port: 7070)])
        #expect(join.gatewayID?.rawValue == id)
        #expect(join.pin == .gateway(NodeID(id)!))
        #expect(join.description == "gw.example.org:7070#\(id)")
    }

    @Test func bracketsIPv6Hosts() throws {
        let join = try JoinAddress(parsing: "[::1]:7070#\(id)")
        #expect(join.endpoints.first?.host == "::1")
        #expect(join.description == "[::1]:7070#\(id)")
        #expect(try JoinAddress(parsing: join.description) == join)
    }

    @Test func aNetworkListsItsGatewaysInOrder() throws {
        let join = try JoinAddress(parsing: "a.example:7070,[::1]:7071,10.0.0.3:7072#net:\(id)")
        #expect(join.endpoints.map(\.description) == ["a.example:7070", "[::1]:7071", "10.0.0.3:7072"])
        #expect(join.pin == .network(NodeID(id)!))
        #expect(join.gatewayID == nil)
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
            "gw:7070,#net:\(id)",  // an empty address
            "gw:7070,gw2#\(id)",  // the second has no port
            "gw:7070#network:\(id)",  // the network prefix is `net:`
            "gw:7070#net:",
            Array(repeating: "gw:7070", count: 17).joined(separator: ",") + "#\(id)",  // too many
        ]
        for text in bad {
            #expect(throws: JoinAddressError.self, "\(text)") { try JoinAddress(parsing: text) }
        }
    }
}
