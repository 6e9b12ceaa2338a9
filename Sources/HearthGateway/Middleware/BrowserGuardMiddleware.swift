import Foundation
import HTTPTypes
import HearthCore
import Hummingbird

/// Keeps web pages from using a gateway on the user's own machine.
///
/// Any site open in a browser can send a "simple" cross-origin POST to `127.0.0.1:8080`, and a site that rebinds its
/// DNS name to 127.0.0.1 can even read the answers. Two checks close both doors:
/// - **Host**: a gateway bound to a loopback address answers only requests whose `Host` names loopback (`localhost`,
///   `*.localhost`, `127.x.x.x`, `[::1]`) or a name the operator allowed (`--allowed-host`). A rebound DNS name fails
///   this. A gateway bound to another address serves any `Host` unless the operator listed names.
/// - **Origin**: browsers send `Origin` on every cross-origin POST (and on same-origin ones), while curl and SDKs send
///   none. A request with an `Origin` is served only when it is the gateway's own origin (the `Host` it was sent to)
///   or one the operator allowed (`--allowed-origin`, exact, `*`, or with `*` wildcards), and only those origins get
///   CORS answers: preflights (`OPTIONS` with `Access-Control-Request-Method`) get 204 and the CORS headers, others 403.
struct BrowserGuardMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let policy: BrowserPolicy

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The gateway that forwarded it checked the browser's Host and Origin against its own policy.
        if context.viaPeer { return try await next(request, context) }
        let shape = ErrorShape(path: request.uri.path)
        // HTTPTypes carries HTTP/1's Host header as the request's authority; a request built in-process may carry
        // it as a field.
        let host = request.headers[.hostField] ?? request.head.authority
        guard policy.allowsHost(host) else {
            return OpenAIError.response(
                for: APIFailure(
                    .permission,
                    "This gateway does not answer requests for the host '\(host ?? "")'. Its operator can allow that name with --allowed-host.",
                    code: "host_not_allowed"
                ),
                shape: shape
            )
        }
        guard let origin = request.headers[.origin] else {
            return try await next(request, context)
        }
        guard policy.allowsOrigin(origin, requestHost: host) else {
            return OpenAIError.response(
                for: APIFailure(
                    .permission,
                    "Requests from web pages at \(origin) are not allowed by this gateway. Its operator can allow them with --allowed-origin \(origin).",
                    code: "origin_not_allowed"
                ),
                shape: shape
            )
        }
        var cors = HTTPFields()
        cors[.accessControlAllowOrigin] = origin
        cors[.vary] = "Origin"
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            cors[.accessControlAllowMethods] = "GET, POST, DELETE, OPTIONS"
            if let requested = request.headers[.accessControlRequestHeaders] {
                cors[.accessControlAllowHeaders] = requested
            }
            cors[.accessControlMaxAge] = "600"
            return Response(status: .noContent, headers: cors)
        }
        cors[.accessControlExposeHeaders] = "X-Request-Id, X-Hearth-Node, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
        var response = try await next(request, context)
        response.headers.append(contentsOf: cors)
        return response
    }
}

/// Which `Host` and `Origin` values a gateway answers (see `BrowserGuardMiddleware`). Pure: tested without a server.
struct BrowserPolicy: Sendable {
    /// Hosts allowed beyond loopback, lower-cased, without ports; `*` allows any.
    var allowedHosts: Set<String>
    /// Origins allowed beyond the gateway's own: exact (`https://chat.example.org`), `*`, or with `*` wildcards.
    var allowedOrigins: [String]
    /// Whether the API listens on a loopback address only.
    var boundToLoopback: Bool
    /// The address the API listens on, which clients may always name.
    var bindHost: String

    init(bindHost: String, allowedHosts: [String], allowedOrigins: [String]) {
        self.allowedHosts = Set(allowedHosts.map { $0.lowercased() })
        self.allowedOrigins = allowedOrigins
        self.bindHost = Self.hostName(bindHost)
        self.boundToLoopback = Self.isLoopback(self.bindHost)
    }

    func allowsHost(_ header: String?) -> Bool {
        if allowedHosts.contains("*") { return true }
        // HTTP/1.0 clients may send no Host; browsers always send one.
        guard let header, !header.isEmpty else { return true }
        let name = Self.hostName(header)
        if Self.isLoopback(name) || allowedHosts.contains(name) || (name == bindHost && !Self.isWildcardAddress(name)) { return true }
        // Off loopback the gateway is meant to be reached by whatever name its network gives it, unless listed.
        return !boundToLoopback && allowedHosts.isEmpty
    }

    func allowsOrigin(_ origin: String, requestHost: String?) -> Bool {
        let origin = origin.lowercased()
        if let requestHost, let sameOrigin = Self.authority(ofOrigin: origin), sameOrigin == requestHost.lowercased() {
            return true
        }
        return allowedOrigins.contains { Self.matches(origin, pattern: $0.lowercased()) }
    }

    /// The `host[:port]` of an origin such as `http://localhost:8080`, or `nil` for `null` and other opaque origins.
    static func authority(ofOrigin origin: String) -> String? {
        guard let range = origin.range(of: "://") else { return nil }
        let rest = origin[range.upperBound...]
        return rest.isEmpty || rest.contains("/") ? nil : String(rest)
    }

    /// The host name of a `Host` header: lower-cased, without port, brackets or a trailing dot.
    ///
    /// Read over its bytes, once a request: Foundation's trimming and `Character.isNumber` were about 1 % of the
    /// gateway's CPU per answer. Only HTTP's spaces (SP, HTAB) are trimmed and only ASCII digits make a port, so a name
    /// dressed in other Unicode spaces or digits is not taken for the loopback name it resembles.
    static func hostName(_ header: String) -> String {
        let lowered = header.lowercased()
        var bytes = lowered.utf8[...]
        let space: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        while let first = bytes.first, space(first) { bytes = bytes.dropFirst() }
        while let last = bytes.last, space(last) { bytes = bytes.dropLast() }
        if bytes.first == UInt8(ascii: "[") {
            if let close = bytes.firstIndex(of: UInt8(ascii: "]")) { bytes = bytes[bytes.index(after: bytes.startIndex)..<close] }
        } else if let colon = bytes.lastIndex(of: UInt8(ascii: ":")),
            bytes[bytes.index(after: colon)...].allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        {
            bytes = bytes[..<colon]
        }
        if bytes.last == UInt8(ascii: ".") { bytes = bytes.dropLast() }
        return String(Substring(bytes))
    }

    static func isLoopback(_ name: String) -> Bool {
        if name == "localhost" || name.hasSuffix(".localhost") || name == "::1" || name == "[::1]" { return true }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { part in UInt8(part).map { _ in true } ?? false }
    }

    static func isWildcardAddress(_ host: String) -> Bool {
        host == "0.0.0.0" || host == "::" || host == "[::]" || host.isEmpty
    }

    /// Glob match with `*` standing for any run of characters.
    static func matches(_ value: String, pattern: String) -> Bool {
        if pattern == "*" { return true }
        let pieces = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        guard pieces.count > 1 else { return value == pattern }
        var rest = Substring(value)
        guard rest.hasPrefix(pieces[0]) else { return false }
        rest = rest.dropFirst(pieces[0].count)
        for piece in pieces.dropFirst().dropLast() where !piece.isEmpty {
            guard let found = rest.range(of: piece) else { return false }
            rest = rest[found.upperBound...]
        }
        return rest.hasSuffix(pieces[pieces.count - 1])
    }
}

extension HTTPField.Name {
    static let accessControlAllowOrigin = Self("Access-Control-Allow-Origin")!
    static let accessControlAllowMethods = Self("Access-Control-Allow-Methods")!
    static let accessControlAllowHeaders = Self("Access-Control-Allow-Headers")!
    static let accessControlRequestMethod = Self("Access-Control-Request-Method")!
    static let accessControlRequestHeaders = Self("Access-Control-Request-Headers")!
    static let accessControlExposeHeaders = Self("Access-Control-Expose-Headers")!
    static let accessControlMaxAge = Self("Access-Control-Max-Age")!
    static let origin = Self("Origin")!
    static let hostField = Self("Host")!
}
