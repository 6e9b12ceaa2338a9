import Foundation
import HTTPTypes
import HearthCore
import HearthWeb
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
        // DNS rebinding would let a web page reach 127.0.0.1 under its own name: only loopback names are answered.
        router.add(middleware: LoopbackHostMiddleware())
        WebRoutes(pages: ["/": "node.html"], files: ["hearth.css", "icon.svg", "common.js", "charts.js", "node.js"]).add(to: router)
        // The page's own server hands it the control token, so the owner never types it. Only a same-origin page gets
        // it: a browser marks every request with `Sec-Fetch-Site`, and a page of another site cannot read this
        // answer anyway (no CORS). Anyone who can open the dashboard on this machine can therefore pause the node,
        // as the dashboard has always said.
        router.get("/api/session") { request, _ in
            if let site = request.headers[.secFetchSite], site != "same-origin", site != "none" {
                return Self.forbidden
            }
            return try Self.json(["token": .string(token)])
        }
        router.get("/api/status") { _, _ in
            var json = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(status.report()))
            json["linked"] = .bool(status.linked)
            json["paused"] = .bool(status.paused)
            json["gateway"] = status.gatewayID.map { .string($0.rawValue) } ?? .null
            json["receipts"] = try JSONDecoder().decode(JSONValue.self, from: try JSONEncoder().encode(status.receipts.lastDay()))
            return try Self.json(json)
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

    static func json(_ value: JSONValue) throws -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(value)))
        )
    }

    static var forbidden: Response {
        EngineProxyController.error(APIFailure(.permission, "Only the dashboard's own page may ask for its session.", code: "cross_site"))
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
}

/// Answers only requests whose `Host` names this machine's loopback (`localhost`, `127.x.x.x`, `[::1]`), with any port.
struct LoopbackHostMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Self.isLoopback(request.head.authority ?? request.headers[.host]) else {
            return EngineProxyController.error(
                APIFailure(.permission, "The node's dashboard answers only on this machine: open http://127.0.0.1:<port>/.", code: "host_not_allowed")
            )
        }
        return try await next(request, context)
    }

    static func isLoopback(_ authority: String?) -> Bool {
        guard var host = authority?.lowercased() else { return true }
        if host.hasPrefix("[") {
            return host.hasPrefix("[::1]")
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host == "localhost" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

extension HTTPField.Name {
    static let secFetchSite = Self("Sec-Fetch-Site")!
    static let host = Self("Host")!
}
