import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

struct AuthRoutesTests {
    struct Login {
        var nonce: String
        var publicKey: String
    }

    func challenge(_ client: some TestClientProtocol, for key: IdentityKey) async throws -> String {
        try await client.execute(
            uri: "/api/auth/challenge",
            method: .post,
            body: try json(["public_key": .string(key.publicKey.base64EncodedString())])
        ) { response in
            #expect(response.status == .ok)
            return try #require(decode(response.body)["nonce"]?.stringValue)
        }
    }

    /// Posts a verify request and returns the status and body.
    func verify(
        _ client: some TestClientProtocol,
        key: IdentityKey,
        nonce: String,
        signer: IdentityKey? = nil,
        message: Data? = nil
    )
        async throws -> (HTTPResponse.Status, JSONValue)
    {
        let signature = try (signer ?? key).sign(message ?? LoginProtocol.message(nonce: nonce))
        let body: JSONValue = [
            "public_key": .string(key.publicKey.base64EncodedString()), "nonce": .string(nonce),
            "signature": .string(signature.base64EncodedString()),
        ]
        return try await client.execute(uri: "/api/auth/verify", method: .post, body: try json(body)) { ($0.status, decode($0.body)) }
    }

    func login(_ client: some TestClientProtocol, _ key: IdentityKey) async throws -> String {
        let (status, body) = try await verify(client, key: key, nonce: try await challenge(client, for: key))
        #expect(status == .ok)
        return try #require(body["token"]?.stringValue)
    }

    func bearer(_ credential: String) -> HTTPFields { [.authorization: "Bearer \(credential)"] }

    @Test func aSignedChallengeGivesATokenThatIdentifiesTheUser() async throws {
        let (gateway, _) = try await makeGateway([:])
        let key = IdentityKey.generate()
        try await gateway.application.test(.router) { client in
            let nonce = try await challenge(client, for: key)
            let (status, body) = try await verify(client, key: key, nonce: nonce)
            #expect(status == .ok)
            #expect(body["user_id"]?.stringValue == key.nodeID.rawValue)
            #expect(body["token_type"] == "Bearer")
            let token = try #require(body["token"]?.stringValue)
            try await client.execute(uri: "/api/keys", method: .get, headers: bearer(token)) { response in
                #expect(response.status == .ok)
                #expect(decode(response.body)["data"] == [])
            }
        }
    }

    @Test func refusesReplayWrongSignatureAndAnotherKeysNonce() async throws {
        let (gateway, _) = try await makeGateway([:])
        let key = IdentityKey.generate()
        let other = IdentityKey.generate()
        try await gateway.application.test(.router) { client in
            let nonce = try await challenge(client, for: key)
            #expect(try await verify(client, key: key, nonce: nonce).0 == .ok)
            let replay = try await verify(client, key: key, nonce: nonce)
            #expect(replay.0 == .unauthorized)
            #expect(replay.1["error"]?["code"] == "invalid_nonce")

            let wrongMessage = try await verify(
                client,
                key: key,
                nonce: try await challenge(client, for: key),
                message: Data("something else".utf8)
            )
            #expect(wrongMessage.0 == .unauthorized)
            #expect(wrongMessage.1["error"]?["code"] == "invalid_signature")

            let wrongSigner = try await verify(client, key: key, nonce: try await challenge(client, for: key), signer: other)
            #expect(wrongSigner.0 == .unauthorized)

            // A nonce issued to `key`, answered (correctly signed) by `other`.
            let stolen = try await verify(client, key: other, nonce: try await challenge(client, for: key))
            #expect(stolen.0 == .unauthorized)
            #expect(stolen.1["error"]?["message"]?.stringValue?.contains("another key") == true)

            #expect(try await verify(client, key: key, nonce: "never-issued").0 == .unauthorized)
        }
    }

    @Test func refusesExpiredNoncesAndExpiredTokens() async throws {
        let (expiring, _) = try await makeGateway([:]) { $0.challengeTTL = .seconds(-1) }
        let key = IdentityKey.generate()
        try await expiring.application.test(.router) { client in
            let (status, body) = try await verify(client, key: key, nonce: try await challenge(client, for: key))
            #expect(status == .unauthorized)
            #expect(body["error"]?["code"] == "expired_nonce")
        }
        let (shortTokens, _) = try await makeGateway([:]) { $0.tokenTTL = .seconds(-1) }
        try await shortTokens.application.test(.router) { client in
            let token = try await login(client, key)
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer(token)) { response in
                #expect(response.status == .unauthorized)
                #expect(decode(response.body)["error"]?["code"] == "invalid_token")
            }
        }
    }

    @Test func refusesMalformedLoginBodies() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            for body in [ByteBuffer(string: "[]"), try json(["public_key": "%%%"]), try json(["public_key": "AAAA"])] {
                try await client.execute(uri: "/api/auth/challenge", method: .post, body: body) { response in
                    #expect(response.status == .badRequest)
                }
            }
            try await client.execute(uri: "/api/auth/verify", method: .post, body: try json(["nonce": 5])) { response in
                #expect(response.status == .badRequest)
            }
            for placeholder in ["Bearer unused", "Bearer sk-no-key-required", "Basic abc"] {
                try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: placeholder]) { response in
                    #expect(response.status == .ok, "OpenAI clients' placeholder keys are anonymous callers")
                }
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer("hk_forged")) { response in
                #expect(response.status == .unauthorized, "a bad credential is refused, not treated as anonymous")
            }
        }
    }

    @Test func anAPIKeyWorksUntilItsOwnerRevokesIt() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.requireAuth = true }
        let key = IdentityKey.generate()
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { response in
                #expect(response.status == .unauthorized, "anonymous callers are refused with --require-auth")
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer("unused")) { response in
                #expect(response.status == .unauthorized, "a placeholder key is no credential")
            }
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
            }
            let token = try await login(client, key)
            let created = try await client.execute(
                uri: "/api/keys",
                method: .post,
                headers: bearer(token),
                body: try json(["name": "my app"])
            ) { response in
                #expect(response.status == .created)
                return decode(response.body)
            }
            let secret = try #require(created["key"]?.stringValue)
            let id = try #require(created["id"]?.stringValue)
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer(secret)) { response in
                #expect(response.status == .ok)
            }
            try await client.execute(uri: "/api/keys", method: .post, headers: bearer(secret), body: try json([:])) { response in
                #expect(response.status == .unauthorized, "an API key cannot mint more keys")
            }
            let stranger = try await login(client, IdentityKey.generate())
            try await client.execute(uri: "/api/keys/\(id)", method: .delete, headers: bearer(stranger)) { response in
                #expect(response.status == .notFound, "only the owner revokes a key")
            }
            try await client.execute(uri: "/api/keys/\(id)", method: .delete, headers: bearer(token)) { response in
                #expect(response.status == .noContent)
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer(secret)) { response in
                #expect(response.status == .unauthorized)
                #expect(decode(response.body)["error"]?["code"] == "invalid_api_key")
            }
        }
        let stored = try await gateway.database.apiKeys(owner: key.nodeID.rawValue)
        #expect(stored.count == 1)
        #expect(stored.first?.revokedAt != nil)
        #expect(stored.first?.secretDigest.count == 64, "only a hash of the secret is stored")
    }
}
