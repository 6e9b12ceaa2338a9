import Foundation
import HearthTesting
import HearthWeb
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

// The limit only catches a hang: these take a second alone, but early in a full run beside stress-ng the whole test
// process has been seen to wait over 100 s for its two cooperative threads.
/// What no HTTP client library would send, over real sockets to a gateway on loopback.
@Suite(.timeLimit(.minutes(4)))
struct RawHTTPTests {
    static let modelsRequest = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    @Test func connectionsThatNeverSendAByteAreClosedAfterTheHeaderTimeout() async throws {
        let shortHeaderTimeout: (inout GatewayConfiguration) -> Void = { $0.headerTimeout = .milliseconds(500) }
        try await withLiveGateway(configure: shortHeaderTimeout) { _, port in
            var silent: [RawConnection] = []
            for _ in 0..<40 { silent.append(try await RawConnection.connect(port: port)) }
            let trickling = try await RawConnection.connect(port: port)
            // On a loaded machine the gateway may close it before this is written; closed is what is expected.
            try? await trickling.send("GET /v1/models HTTP/1.1\r\nHost: 127")
            for connection in silent + [trickling] {
                let (text, closed) = await connection.readUntilClosed(timeout: .seconds(30))
                #expect(closed, "a silent connection stayed open")
                #expect(text.isEmpty)
            }
            // The gateway still serves (sent again on a new connection if a loaded machine let the half-second
            // header timeout close it first).
            var served = ""
            for _ in 0..<5 where !served.hasPrefix("HTTP/1.1 200") {
                let client = try await RawConnection.connect(port: port, sending: Self.modelsRequest)
                served = await client.read(until: "\"data\"", timeout: .seconds(30))
            }
            #expect(served.hasPrefix("HTTP/1.1 200"))
        }
    }

    @Test func oneAddressCannotHoldMoreConnectionsThanItsCap() async throws {
        // A header timeout long enough that only the cap closes connections here, however loaded the machine.
        let capOfFour: (inout GatewayConfiguration) -> Void = {
            $0.maxConnectionsPerAddress = 4
            $0.headerTimeout = .seconds(600)
        }
        try await withLiveGateway(configure: capOfFour) { _, port in
            var held: [RawConnection] = []
            for _ in 0..<4 { held.append(try await RawConnection.connect(port: port)) }
            // Each held connection is open and served.
            for connection in held {
                try await connection.send(Self.modelsRequest)
                #expect(await connection.read(until: "\"data\"", timeout: .seconds(30)).hasPrefix("HTTP/1.1 200"))
            }
            let extra = try await RawConnection.connect(port: port)
            // The gateway may close it before this is written.
            try? await extra.send(Self.modelsRequest)
            let (text, closed) = await extra.readUntilClosed(timeout: .seconds(30))
            #expect(closed)
            #expect(!text.contains("200 OK"), "a fifth connection was served: \(text)")
            // Closing one frees its place.
            held.removeFirst().close()
            var served = false
            for _ in 0..<100 where !served {
                let next = try await RawConnection.connect(port: port)
                try? await next.send(Self.modelsRequest)
                served = await next.read(until: "\"data\"", timeout: .seconds(5)).hasPrefix("HTTP/1.1 200")
                if !served { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(served)
        }
    }

    @Test func anInvalidChunkedBodyIsTheClientsError() async throws {
        try await withLiveGateway { _, port in
            // Sent again on a new connection when the gateway closed the last one before it was written: a loaded
            // machine has stalled this process past the header timeout between the connect and the send.
            var text = ""
            for _ in 0..<5 where text.isEmpty {
                let connection = try await RawConnection.connect(
                    port: port,
                    sending:
                        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                )
                text = await connection.readUntilClosed(timeout: .seconds(30)).text
            }
            #expect(text.hasPrefix("HTTP/1.1 400"), "\(text)")
            #expect(!text.contains("internal_error"))
        }
    }

    /// The server runs no timer for its `Date` header (an idle gateway sleeps): the header is made when an answer
    /// needs it, and is still today's, in RFC 9110's format.
    @Test func answersCarryTheDateAndTheServersName() async throws {
        #expect(HTTPDateHeader.format(784_111_777) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDateHeader.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDateHeader.format(1_798_761_599) == "Thu, 31 Dec 2026 23:59:59 GMT")
        try await withLiveGateway { _, port in
            for _ in 0..<2 {
                let before = Int(Date().timeIntervalSince1970)
                let connection = try await RawConnection.connect(port: port, sending: Self.modelsRequest)
                let text = await connection.read(until: "\"data\"", timeout: .seconds(30))
                let after = Int(Date().timeIntervalSince1970)
                let date = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("date: ") }.map { String($0.dropFirst(6)) }
                #expect(date.map { date in (before...after).contains { HTTPDateHeader.format($0) == date } } == true, "\(text)")
                #expect(text.lowercased().contains("\r\nserver: hearth\r\n"), "\(text)")
            }
        }
    }
}
