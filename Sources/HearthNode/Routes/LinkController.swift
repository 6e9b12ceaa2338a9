import Foundation
import HearthCore
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat

/// What the gateway asks the node about itself over the link: its credentials when the link comes up
/// (`GET /link/v1/hello`), a refusal if it is not admitted (`POST /link/v1/refused`), and its reports.
///
/// `GET /link/v1/report` is a long poll: with `x-hearth-after: <revision>` the node answers as soon as its state
/// differs from that revision, or after `x-hearth-wait-ms` (at most 60 s) with the same one. Each poll also tells
/// the node that its link is alive.
///
/// `POST /link/v1/cancel` (with `x-request-id`) stops an answer whose client went away: the engine stops, and the
/// answer's stream ends with a receipt for what was done (204; 404 when no such answer is under way).
struct LinkController {
    let status: NodeStatus
    let inFlight: InFlightRequests

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get(RouterPath(LinkProtocol.Path.hello)) { _, _ in
            let data = try JSONEncoder().encode(status.hello)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.post(RouterPath(LinkProtocol.Path.refused)) { request, _ in
            let body = try await request.body.collect(upTo: 64 << 10)
            if let refusal = try? JSONDecoder().decode(LinkRefusal.self, from: body) { status.refused(refusal) }
            return Response(status: .noContent)
        }
        router.post(RouterPath(LinkProtocol.Path.cancel)) { request, _ in
            guard let id = request.headers[.init(LinkProtocol.Header.requestID)!], inFlight.cancel(id) else {
                return Response(status: .notFound)
            }
            return Response(status: .noContent)
        }
        router.get(RouterPath(LinkProtocol.Path.report)) { request, _ in
            status.polled()
            let after = request.headers[.init(LinkProtocol.Header.after)!]
            let waitMilliseconds = request.headers[.init(LinkProtocol.Header.waitMilliseconds)!].flatMap { Int($0) } ?? 0
            if let after {
                let hold = Duration.milliseconds(min(max(waitMilliseconds, 0), 60_000))
                status.polled(holding: hold)
                // Answered as soon as anything the report shows changes (`ChangeSignal`), else when the hold ends.
                await status.changes.wait(until: .now + hold) { status.revision != after }
            }
            status.polled()
            let report = status.report()
            let data = try JSONEncoder().encode(report)
            status.delivered(report)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }
}
