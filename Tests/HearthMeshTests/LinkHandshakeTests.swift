import NIOCore
import NIOEmbedded
import Testing

@testable import HearthCore
@testable import HearthMesh

/// The handshake handler always answers whoever waits for the peer, however its channel ends.
struct LinkHandshakeTests {
    /// A dial that is refused tears the channel down without it ever going active: the peer's promise must still be
    /// failed (NIO traps on a leaked promise in debug builds, and a waiter would wait for ever in release builds).
    @Test func aChannelTornDownBeforeItWasActiveFailsThePeer() throws {
        let channel = EmbeddedChannel()
        let handler = LinkHandshakeHandler(eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandler(handler)
        let peer = handler.peer
        _ = try channel.finish()
        #expect(throws: LinkError.closed) { try peer.wait() }
    }

    @Test func removingTheHandlerFailsAPeerNotYetProven() throws {
        let channel = EmbeddedChannel()
        let handler = LinkHandshakeHandler(eventLoop: channel.eventLoop)
        try channel.pipeline.syncOperations.addHandler(handler)
        let peer = handler.peer
        try channel.pipeline.syncOperations.removeHandler(handler).wait()
        #expect(throws: LinkError.closed) { try peer.wait() }
        _ = try channel.finish()
    }
}
