import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// A plain TCP connection for tests that must send what no HTTP client would: broken framing, smuggling attempts,
/// half-sent headers, or nothing at all. One task reads everything the server sends from the start; the waits below
/// are woken by what it reads, each bounded by its timeout.
package final class RawConnection: Sendable {
    private struct State {
        var text = ""
        var closed = false
        var waiters: [(id: UUID, ready: @Sendable (String, Bool) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let channel: any Channel
    /// The reading task's findings, shared with the waits (a class, so the task and the waits hold the same one).
    private final class Box: Sendable {
        let state = Mutex(State())
    }

    private let box = Box()
    private let reader: Task<Void, Never>

    private init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>) {
        self.channel = channel.channel
        let box = self.box
        reader = Task {
            do {
                try await channel.executeThenClose { inbound, _ in
                    for try await chunk in inbound { Self.update(box) { $0.text += String(buffer: chunk) } }
                }
            } catch {
                // A reset counts as closed, like a clean end.
            }
            Self.update(box) { $0.closed = true }
        }
    }

    /// Connects to `host:port`, and sends `text` (when given) the moment the connection is up, from its event loop.
    ///
    /// A request sent by a separate `send` goes out only when the test's task runs again, and early in a full run
    /// beside stress-ng this process's task pool has been measured seconds late (the event loops were not): long
    /// enough for a gateway's header timeout to close the connection as a silent one first. The connect timeout only
    /// catches a hang (a loopback connect once timed out at 5 s in such a run).
    package static func connect(host: String = "127.0.0.1", port: Int, sending text: String? = nil) async throws -> RawConnection {
        let first = text.map { ByteBuffer(string: $0) }
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(30))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let first { try channel.pipeline.syncOperations.addHandler(SendWhenActive(first)) }
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return RawConnection(channel: channel)
    }

    /// Sends `text` as it is (write `\r\n` yourself).
    package func send(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text))
    }

    /// What the server has sent so far, and whether it closed the connection.
    package var received: (text: String, closed: Bool) { box.state.withLock { ($0.text, $0.closed) } }

    /// Waits until the server has closed the connection, or `timeout` passes; returns what it sent and whether it
    /// closed.
    package func readUntilClosed(timeout: Duration) async -> (text: String, closed: Bool) {
        await wait(timeout: timeout) { _, closed in closed }
        return received
    }

    /// Waits until `marker` has arrived (or the connection closes, or `timeout` passes) and returns what came.
    package func read(until marker: String, timeout: Duration) async -> String {
        await wait(timeout: timeout) { text, closed in closed || text.contains(marker) }
        return received.text
    }

    package func close() {
        channel.close(promise: nil)
        reader.cancel()
    }

    /// Closes with a reset instead of a FIN (`SO_LINGER` 0), as a client's kernel does for a killed process that
    /// left data unread: the server's next read fails, where after a FIN it could still answer a half-closed client.
    package func reset() async throws {
        if let socket = channel as? any SocketOptionProvider {
            try await socket.setSoLinger(linger(l_onoff: 1, l_linger: 0)).get()
        }
        close()
    }

    deinit {
        channel.close(promise: nil)
    }

    private func wait(timeout: Duration, until ready: @escaping @Sendable (String, Bool) -> Bool) async {
        let id = UUID()
        let box = self.box
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let now = box.state.withLock { state -> Bool in
                        if ready(state.text, state.closed) { return true }
                        state.waiters.append((id, ready, continuation))
                        return false
                    }
                    if now { continuation.resume() }
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                Self.release(box, id)
            }
            await withTaskCancellationHandler {
                _ = await group.next()
            } onCancel: {
                Self.release(box, id)
            }
            Self.release(box, id)
            group.cancelAll()
        }
    }

    private static func update(_ box: Box, _ change: (inout State) -> Void) {
        let woken = box.state.withLock { state in
            change(&state)
            let ready = state.waiters.filter { $0.ready(state.text, state.closed) }
            state.waiters.removeAll { waiter in ready.contains { $0.id == waiter.id } }
            return ready.map(\.continuation)
        }
        for continuation in woken { continuation.resume() }
    }

    private static func release(_ box: Box, _ id: UUID) {
        let waiter = box.state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        waiter?.resume()
    }
}

/// Writes its bytes as its channel becomes active, then steps aside.
private final class SendWhenActive: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let bytes: ByteBuffer

    init(_ bytes: ByteBuffer) {
        self.bytes = bytes
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
