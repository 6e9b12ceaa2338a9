import HearthCore
import Hummingbird

/// Reads `Authorization: Bearer …` (a login token or an API key) into `context.caller`.
///
/// A Hearth credential (`ht_…` token, `hk_…` key) that does not check out is refused with 401, never downgraded to
/// anonymous. OpenAI clients must send some key even where none is needed (`api_key="unused"`), so any other bearer
/// value counts as no credential: anonymous, which `/v1` and `/api` accept unless the operator asked for
/// `--require-auth`.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    let auth: AuthService
    let requireAuth: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization], header.hasPrefix("Bearer "),
            case let credential = String(header.dropFirst(7)), AuthService.isHearthCredential(credential)
        {
            context.caller = try await auth.caller(forBearer: credential)
        } else if requireAuth && Self.needsCaller(request.uri.path) {
            throw OpenAIError(
                .authentication,
                "This gateway requires a login token or an API key (Authorization: Bearer …).",
                code: "missing_credentials"
            )
        }
        return try await next(request, context)
    }

    /// The API routes a `--require-auth` gateway closes to anonymous callers; logging in stays possible.
    static func needsCaller(_ path: String) -> Bool {
        (path.hasPrefix("/v1/") || path.hasPrefix("/api/")) && !path.hasPrefix("/api/auth/")
    }
}
