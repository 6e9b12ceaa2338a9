import Foundation
import HearthCore
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat

/// Login by challenge and signature, and API keys for apps that cannot sign.
struct AuthController {
    let auth: AuthService
    let database: GatewayDatabase
    let maxBodyBytes: Int

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.post("/api/auth/challenge") { request, _ in
            let body = try await readObject(request)
            let issued = try await auth.challenge(publicKey: try base64(body, "public_key"))
            return try jsonResponse(["nonce": .string(issued.nonce), "expires_at": .string(Self.timestamp(issued.expiresAt))])
        }
        router.post("/api/auth/verify") { request, _ in
            let body = try await readObject(request)
            guard let nonce = body["nonce"]?.stringValue else {
                throw OpenAIError(.invalidRequest, "'nonce' must be a string.", param: "nonce")
            }
            let publicKey = try base64(body, "public_key")
            let signature = try base64(body, "signature")
            let login = try await auth.verify(publicKey: publicKey, nonce: nonce, signature: signature)
            return try jsonResponse([
                "token": .string(login.token), "token_type": "Bearer", "expires_at": .string(Self.timestamp(login.expiresAt)),
                "user_id": .string(login.user.rawValue),
            ])
        }
        router.post("/api/keys") { request, context in
            let owner = try Self.user(context)
            let body = try await readObject(request)
            let name = body["name"]?.stringValue ?? "api key"
            guard (1...100).contains(name.count) else { throw OpenAIError(.invalidRequest, "'name' must be 1 to 100 characters.", param: "name") }
            let created = try await auth.createAPIKey(owner: owner, name: name)
            return try jsonResponse(
                ["id": .string(created.record.id), "name": .string(name), "key": .string(created.secret)],
                status: .created
            )
        }
        router.get("/api/keys") { _, context in
            let owner = try Self.user(context)
            let keys = try await database.apiKeys(owner: owner.rawValue).map { key -> JSONValue in
                [
                    "id": .string(key.id), "name": .string(key.name), "created_at": .string(Self.timestamp(key.createdAt)),
                    "revoked": .bool(key.revokedAt != nil),
                ]
            }
            return try jsonResponse(["data": .array(keys)])
        }
        router.delete("/api/keys/{id}") { _, context in
            let owner = try Self.user(context)
            let id = try context.parameters.require("id")
            guard try await database.revokeAPIKey(id: id, owner: owner.rawValue, at: Date()) else {
                throw OpenAIError(.notFound, "No active API key '\(id)' of yours.", code: "api_key_not_found")
            }
            return Response(status: .noContent)
        }
    }

    /// Managing keys needs a logged-in person, not an API key.
    static func user(_ context: GatewayRequestContext) throws -> NodeID {
        guard case .user(let id) = context.caller else {
            throw OpenAIError(.authentication, "Log in (hearth login) to manage API keys.", code: "login_required")
        }
        return id
    }

    private func readObject(_ request: Request) async throws -> JSONValue {
        let buffer = try await request.body.collect(upTo: maxBodyBytes)
        guard let value = try? CompletionPipeline.parse(buffer), case .object = value else {
            throw OpenAIError(.invalidRequest, "The request body must be a JSON object.", code: "invalid_json")
        }
        return value
    }

    private func base64(_ body: JSONValue, _ field: String) throws -> Data {
        guard let text = body[field]?.stringValue, let data = Data(base64Encoded: text) else {
            throw OpenAIError(.invalidRequest, "'\(field)' must be base64.", param: field)
        }
        return data
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
