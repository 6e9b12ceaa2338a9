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
struct LinkController {
    let status: NodeStatus

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/link/v1/hello") { _, _ in
            let data = try JSONEncoder().encode(status.hello)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
        router.post("/link/v1/refused") { request, _ in
            let body = try await request.body.collect(upTo: 64 << 10)
            if let refusal = try? JSONDecoder().decode(LinkRefusal.self, from: body) { status.refused(refusal) }
            return Response(status: .noContent)
        }
        router.get("/link/v1/report") { request, _ in
            status.polled()
            let after = request.headers[.init("x-hearth-after")!]
            let waitMilliseconds = request.headers[.init("x-hearth-wait-ms")!].flatMap { Int($0) } ?? 0
            if let after {
                let hold = Duration.milliseconds(min(max(waitMilliseconds, 0), 60_000))
                status.polled(holding: hold)
                let deadline = ContinuousClock.now + hold
                while status.revision == after && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            status.polled()
            let report = status.report()
            let data = try JSONEncoder().encode(report)
            status.delivered(report)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
        }
    }
}
