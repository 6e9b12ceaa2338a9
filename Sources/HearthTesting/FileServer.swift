package import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// A real HTTP server on 127.0.0.1 that serves files with Range support, and misbehaves on request, so tests can
/// download models without the internet.
package final class FileServer: Sendable {
    /// How the server answers the next requests.
    package enum Behaviour: Sendable, Equatable {
        /// The file as it is, honouring `Range: bytes=N-`.
        case normal
        /// Sends the head for the whole rest, then only `bytes` bytes, then closes the connection.
        case dropAfter(bytes: Int)
        /// Serves the file with the byte at `offset` flipped.
        case corruptByte(offset: Int)
        /// Serves only the first `bytes` bytes, as if that were the whole file.
        case truncated(bytes: Int)
        /// Ignores Range and always sends the whole file with 200.
        case ignoreRange
        /// Sends `bytes` bytes, then waits for `releaseHeld()` (two minutes at most) before the rest: a mirror that
        /// stalls for exactly as long as a test needs, however slow the machine.
        case holdAfter(bytes: Int)
    }

    private let files: [String: Data]
    private let held = Gate()

    /// Lets every `holdAfter` answer, now and later, send the rest.
    package func releaseHeld() {
        held.open()
    }

    private func waitUntilReleased() async {
        // The bound: a test that never releases fails on its own waits, not on a hung download.
        let timeout = Task { [weak self] in
            try? await Task.sleep(for: .seconds(120))
            self?.releaseHeld()
        }
        defer { timeout.cancel() }
        await held.wait()
    }

    private let behaviours = Mutex<[Behaviour]>([])
    private let ranges = Mutex<[String]>([])
    private let running = Mutex<LoopbackServer?>(nil)

    /// The port it listens on, on 127.0.0.1.
    package var port: Int { running.withLock { $0?.port ?? 0 } }

    /// The `Range` headers received, in order (`""` for a request without one).
    package var rangesSeen: [String] { ranges.withLock { $0 } }

    package func url(_ name: String) -> String { "http://127.0.0.1:\(port)/\(name)" }

    /// Answers the next requests with `behaviours` in order, then normally.
    package func then(_ behaviours: Behaviour...) {
        self.behaviours.withLock { $0 = behaviours }
    }

    private init(files: [String: Data]) {
        self.files = files
    }

    /// Starts a server for `files` (name → contents) on a free port and waits until it listens.
    package static func start(files: [String: Data]) async throws -> FileServer {
        let server = FileServer(files: files)
        let running = try await LoopbackServer.start(router: server.router(), name: "hearth-test-files")
        server.running.withLock { $0 = running }
        return server
    }

    package func stop() async {
        await running.withLock({ $0 })?.stop()
    }

    private func nextBehaviour(range: String) -> Behaviour {
        ranges.withLock { $0.append(range) }
        return behaviours.withLock { $0.isEmpty ? .normal : $0.removeFirst() }
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        // Whole files as buffers: a response is a slice of one, never a copy (the model is 98 MB).
        let buffers = files.mapValues { ByteBuffer(bytes: $0) }
        router.get("/:name") { request, context in
            guard let name = context.parameters.get("name"), var file = buffers[name] else { return Response(status: .notFound) }
            let rangeHeader = request.headers[.range] ?? ""
            let behaviour = self.nextBehaviour(range: rangeHeader)
            switch behaviour {
            case .corruptByte(let offset):
                var copy = ByteBuffer(buffer: file)
                copy.setInteger(copy.getInteger(at: offset, as: UInt8.self)! ^ 0xFF, at: offset)
                file = copy
            case .truncated(let bytes):
                file = file.getSlice(at: 0, length: bytes)!
            default:
                break
            }
            // `bytes=a-` or `bytes=a-b`, as the downloads and the header reader ask.
            var first = 0
            var last = file.readableBytes - 1
            let bounds = rangeHeader.hasPrefix("bytes=") ? rangeHeader.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false) : []
            let ranged = behaviour != .ignoreRange && bounds.count == 2 && Int(bounds[0]) != nil
            if ranged {
                first = Int(bounds[0]) ?? 0
                last = min(Int(bounds[1]) ?? last, last)
                guard first <= last else {
                    return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(file.readableBytes)"])
                }
            }
            let body = file.getSlice(at: first, length: last - first + 1) ?? ByteBuffer()
            var headers: HTTPFields = [.contentLength: String(body.readableBytes), .acceptRanges: "bytes"]
            if ranged { headers[.contentRange] = "bytes \(first)-\(last)/\(file.readableBytes)" }
            let status: HTTPResponse.Status = ranged ? .partialContent : .ok
            switch behaviour {
            case .holdAfter(let bytes):
                return Response(
                    status: status,
                    headers: headers,
                    body: ResponseBody { writer in
                        try await writer.write(body.getSlice(at: 0, length: min(bytes, body.readableBytes)) ?? ByteBuffer())
                        await self.waitUntilReleased()
                        if bytes < body.readableBytes {
                            try await writer.write(body.getSlice(at: bytes, length: body.readableBytes - bytes) ?? ByteBuffer())
                        }
                        try await writer.finish(nil)
                    }
                )
            case .dropAfter(let bytes):
                return Response(
                    status: status,
                    headers: headers,
                    body: ResponseBody { writer in
                        try await writer.write(body.getSlice(at: 0, length: min(bytes, body.readableBytes)) ?? ByteBuffer())
                        throw TestProcessError("dropping the connection on purpose")
                    }
                )
            default:
                return Response(status: status, headers: headers, body: .init(byteBuffer: body))
            }
        }
        return router
    }
}
