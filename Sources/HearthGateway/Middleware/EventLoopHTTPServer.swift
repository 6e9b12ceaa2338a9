import HearthMesh
import HummingbirdCore
import Logging
import NIOCore

/// An HTTP/1 server whose connections each run on the event loop their socket belongs to: the task that reads a
/// connection's requests, runs the handlers and writes the responses has that loop as its executor
/// (`EventLoopExecutor`), as nginx runs a connection in the worker that accepted it.
///
/// Hummingbird runs a connection's task on the cooperative pool, so every request crossed threads several times:
/// from the loop that read it to a pool thread, and back for each write (the gateway switched threads about sixteen
/// times per whole answer; eight here, and 0.1 ms less added latency, `bench/README.md`). Here a request stays on one
/// thread from its first byte to its last, unless it awaits something with its own threads (the database's writer,
/// a PostgreSQL lane).
/// Handlers must not block: the loop serves every other connection it holds.
struct EventLoopChildChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base

    /// A connection's reads start at 1 KiB (nginx's `client_header_buffer_size`) rather than NIO's 2 KiB, and grow for
    /// larger requests: while a connection is open, the last buffer it read stays with it (a stream held open kept one
    /// of 2 KiB each, `heaptrack`: 1.05 MB over 500 held streams, 0.25 MB with 512-byte reads).
    static var receiveBuffers: AdaptiveRecvByteBufferAllocator {
        AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536)
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        do {
            try channel.syncOptions?.setOption(ChannelOptions.recvAllocator, value: Self.receiveBuffers)
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return base.setup(channel: channel, logger: logger)
    }

    func handle(value: Value, logger: Logger) async {
        await withTaskExecutorPreference(EventLoopExecutor(value.channel.eventLoop)) {
            // Watched for its end while a request waits for a node (`ClientWatch`). Added from the loop: no hop.
            let watch = ClientWatch()
            _ = try? await value.channel.pipeline.addHandler(ClientWatchHandler(watch), position: .first).get()
            await ClientWatch.$current.withValue(watch) {
                await base.handle(value: value, logger: logger)
            }
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1, each connection on its own event loop (`EventLoopChildChannel`).
    static func http1OnEventLoops(configuration: HTTP1Channel.Configuration) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            EventLoopChildChannel(base: HTTP1Channel(responder: responder, configuration: configuration))
        }
    }
}
