import Foundation
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
        if let credential = Self.bearerCredential(request.headers[.authorization]), AuthService.isHearthCredential(credential) {
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

    /// The API routes a `--require-auth` gateway closes to anonymous callers; logging in stays possible. `path` is
    /// canonical (`GatewayResponder` made it so before any middleware ran).
    static func needsCaller(_ path: String) -> Bool {
        CanonicalPath.isAPI(path) && path != "/api/auth" && !path.hasPrefix("/api/auth/")
    }

    /// The credential of an `Authorization: Bearer …` header. The scheme is case-insensitive (RFC 9110 §11.1), so
    /// `bearer ht_…` is read exactly as `Bearer ht_…`; whitespace around the credential is ignored.
    static func bearerCredential(_ header: String?) -> String? {
        guard let header else { return nil }
        let trimmed = header.drop { $0 == " " || $0 == "\t" }
        guard let space = trimmed.firstIndex(where: { $0 == " " || $0 == "\t" }),
            trimmed[..<space].lowercased() == "bearer"
        else { return nil }
        let credential = trimmed[space...].trimmingCharacters(in: .whitespaces)
        return credential.isEmpty ? nil : credential
    }
}
