import HTTPTypes
import HearthMesh
import HearthWeb
import Hummingbird

/// Adds `X-Request-Id` to every response and records request counts and latency by route template.
///
/// It sits outside `OpenAIErrorMiddleware`, so it always sees a response, never an error.
struct EdgeMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let metrics: GatewayMetrics
    /// The requests under way, from their first byte to their response's last (`IdleCodeRelease`).
    var activity: Activity? = nil

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let activity = self.activity
        activity?.begin()
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            activity?.end()
            throw error
        }
        response.headers[.requestID] = context.id
        let route = Self.routeLabel(context.endpointPath, path: request.uri.path)
        let status = Int(response.status.code)
        let metrics = self.metrics
        let body = response.body
        let finished: @Sendable () -> Void = {
            activity?.end()
            metrics.requestFinished(route: route, status: status, duration: ContinuousClock.now - started)
        }
        response.body = .owing(contentLength: body.contentLength, ifNeverRun: finished) { writer in
            defer { finished() }
            try await body.write(writer)
        }
        return response
    }

    /// A bounded label: the matched route template, or `unmatched`.
    static func routeLabel(_ template: String?, path: String) -> String {
        template ?? "unmatched"
    }
}

extension HTTPField.Name {
    static let requestID = Self("X-Request-Id")!
    static let hearthNode = Self("X-Hearth-Node")!
    static let rateLimitLimit = Self("X-RateLimit-Limit")!
    static let rateLimitRemaining = Self("X-RateLimit-Remaining")!
    static let rateLimitReset = Self("X-RateLimit-Reset")!
    static let xForwardedFor = Self("X-Forwarded-For")!
}
