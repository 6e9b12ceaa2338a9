import HTTPTypes
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Testing

@testable import HearthGateway

/// A response head's flush waits for the body written in the same turn, so both leave in one `write`; a head alone
/// leaves when the turn ends, an informational head at once, and a close never overtakes a held head.
struct ResponseHeadFlushTests {
    func channel() throws -> (EmbeddedChannel, EmbeddedEventLoop) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(handler: ResponseHeadFlushHandler(), loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, loop)
    }

    func next(_ channel: EmbeddedChannel) throws -> String? {
        switch try channel.readOutbound(as: HTTPResponsePart.self) {
        case .head(let head): "head \(head.status.code)"
        case .body(let body): "body \(String(buffer: body))"
        case .end: "end"
        case nil: nil
        }
    }

    @Test func aHeadWaitsForTheBodyWrittenInTheSameTurn() throws {
        let (channel, _) = try channel()
        channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .ok)), promise: nil)
        #expect(try next(channel) == nil, "the head left alone")
        channel.writeAndFlush(HTTPResponsePart.body(ByteBuffer(string: "answer")), promise: nil)
        // The body's flush takes the head along, before the turn ends.
        #expect(try next(channel) == "head 200")
        #expect(try next(channel) == "body answer")
        channel.writeAndFlush(HTTPResponsePart.end(nil), promise: nil)
        #expect(try next(channel) == "end")
        _ = try channel.finish()
    }

    @Test func aHeadAloneLeavesWhenTheTurnEnds() throws {
        let (channel, loop) = try channel()
        channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .ok)), promise: nil)
        #expect(try next(channel) == nil)
        loop.run()
        #expect(try next(channel) == "head 200", "a stream's head waited for its first event")
        // The next response's head is held again, not flushed for good.
        channel.writeAndFlush(HTTPResponsePart.end(nil), promise: nil)
        channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .notFound)), promise: nil)
        #expect(try next(channel) == "end")
        #expect(try next(channel) == nil)
        loop.run()
        #expect(try next(channel) == "head 404")
        _ = try channel.finish()
    }

    @Test func anInformationalHeadLeavesAtOnce() throws {
        let (channel, _) = try channel()
        channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .continue)), promise: nil)
        #expect(try next(channel) == "head 100", "a client waiting for 100 Continue before its body would stall")
        _ = try channel.finish()
    }

    @Test func aCloseFlushesTheHeadItHolds() throws {
        let (channel, _) = try channel()
        channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .ok)), promise: nil)
        channel.close(promise: nil)
        #expect(try next(channel) == "head 200")
    }
}
