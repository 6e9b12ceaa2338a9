import NIOCore
import NIOEmbedded
import NIOHTTP2
import Testing

@testable import HearthCore
@testable import HearthMesh

/// The round-trip meter: PINGs out on stream 0, their acknowledgements matched by payload and kept from the handlers
/// after it, every waiter answered however the link ends.
struct LinkRoundTripTests {
    func ping(_ frame: HTTP2Frame?) -> (HTTP2PingData, ack: Bool)? {
        guard let frame, frame.streamID == .rootStream, case .ping(let data, let ack) = frame.payload else { return nil }
        return (data, ack)
    }

    @Test func anAcknowledgementAnswersItsOwnPingAndGoesNoFurther() throws {
        let channel = EmbeddedChannel()
        let meter = try LinkRoundTrip.add(to: channel)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let first = meter.measure()
        let second = meter.measure()
        let sentFirst = try #require(ping(try channel.readOutbound(as: HTTP2Frame.self)))
        let sentSecond = try #require(ping(try channel.readOutbound(as: HTTP2Frame.self)))
        #expect(!sentFirst.ack && !sentSecond.ack)
        #expect(sentFirst.0 != sentSecond.0)

        // The second's answer comes first: only the second is answered, and the frame stops at the meter.
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(sentSecond.0, ack: true)))
        #expect(try channel.readInbound(as: HTTP2Frame.self) == nil)
        #expect(try second.wait() >= .zero)
        // An embedded channel's loop is this thread, so its callbacks run here, at once.
        let firstDone = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
        first.whenComplete { _ in firstDone.value = true }
        #expect(!firstDone.value)

        // An acknowledgement nobody waits for, and the peer's own PING, go on down the pipeline.
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: 999), ack: true)))
        #expect(ping(try channel.readInbound(as: HTTP2Frame.self))?.ack == true)
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(sentFirst.0, ack: false)))
        #expect(ping(try channel.readInbound(as: HTTP2Frame.self))?.ack == false)
        #expect(!firstDone.value)

        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .ping(sentFirst.0, ack: true)))
        #expect(try first.wait() >= .zero)
        _ = try channel.finish()
    }

    @Test func aLinkThatAnswersNoPingIsNotSentMoreAndItsWaitersFailWhenItCloses() throws {
        let channel = EmbeddedChannel()
        let meter = try LinkRoundTrip.add(to: channel)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let waiting = (0..<4).map { _ in meter.measure() }
        #expect(throws: LinkError.timedOut) { try meter.measure().wait() }
        for _ in 0..<4 { #expect(ping(try channel.readOutbound(as: HTTP2Frame.self)) != nil) }
        #expect(try channel.readOutbound(as: HTTP2Frame.self) == nil)

        try channel.close().wait()
        for future in waiting { #expect(throws: LinkError.closed) { try future.wait() } }
        #expect(throws: LinkError.closed) { try meter.measure().wait() }
    }
}
