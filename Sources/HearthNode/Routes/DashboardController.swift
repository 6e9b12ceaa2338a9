import Foundation
import HearthCore
import Hummingbird
import NIOCore

/// The node owner's local dashboard: status for anyone on this machine, changes only with the control token.
///
/// It listens on 127.0.0.1 only. The token is random per start and written to `control.token` in the node's data
/// folder (owner-only), so only the owner's account can read it. The gateway's link never reaches these routes.
struct DashboardController {
    let status: NodeStatus
    let token: String

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in
            let report = status.report()
            // The detail carries download progress ("downloading 45% …") and why a load failed.
            let rows = report.models.map {
                "<tr><td>\(Self.escape($0.id.rawValue))</td><td>\($0.state.rawValue)</td><td>\(Self.escape($0.detail ?? ""))</td></tr>"
            }.joined()
            let html = """
                <!doctype html><meta charset="utf-8"><title>Hearth node</title>
                <h1>Hearth node \(Self.escape(report.name))</h1>
                <p>Gateway link: \(status.linked ? "up" : "down") · serving: \(report.inFlight) · \(status.paused ? "paused" : (report.draining ? "draining" : "taking work"))</p>
                <p>\(Self.escape(report.sandbox?.summary ?? "engine sandbox: unknown"))</p>
                <table><tr><th>model</th><th>state</th><th>detail</th></tr>\(rows)</table>
                <p>JSON: <a href="/api/status">/api/status</a>. Pause or resume with POST /api/pause or /api/resume and the token in control.token.</p>
                """
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
        }
        router.get("/api/status") { _, _ in
            var json = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(status.report()))
            json["linked"] = .bool(status.linked)
            json["paused"] = .bool(status.paused)
            return Response(
                status: .ok,
                headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(json)))
            )
        }
        router.post("/api/pause") { request, _ in
            guard authorized(request) else { return Self.unauthorized }
            status.setPaused(true)
            return Response(status: .noContent)
        }
        router.post("/api/resume") { request, _ in
            guard authorized(request) else { return Self.unauthorized }
            status.setPaused(false)
            return Response(status: .noContent)
        }
    }

    private func authorized(_ request: Request) -> Bool {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        return Self.constantTimeEquals(Array(header.dropFirst(7).utf8), Array(token.utf8))
    }

    static func constantTimeEquals(_ left: [UInt8], _ right: [UInt8]) -> Bool {
        guard left.count == right.count else { return false }
        return zip(left, right).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static var unauthorized: Response {
        EngineProxyController.error(
            APIFailure(
                .authentication,
                "Changes need the token in the node's control.token: Authorization: Bearer <token>.",
                code: "control_token_required"
            )
        )
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
