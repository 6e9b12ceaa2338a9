import ArgumentParser
import AsyncHTTPClient
import Foundation
import HearthCore
import HearthMesh
import HearthNode
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// `hearth login`: prove a key to the gateway and get a bearer token.
struct LoginCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login",
        abstract: "Log in to a gateway with your Ed25519 key and print a bearer token.",
        discussion: """
            The gateway sends a single-use nonce; the key signs it; the gateway answers with a short-lived token.
            Make a key first with: hearth keys new --file <path>
            """
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "Your key file (default: user.key in the per-user data folder).")
    var key: String?

    func run() async throws {
        let path = key ?? CommandEnvironment().defaultDataDirectory + "/user.key"
        let identity: IdentityKey
        do {
            identity = try KeyFile.load(path)
        } catch let error as NodeStartError {
            throw ValidationError("\(error.description). Make a key with: hearth keys new --file \(path)")
        }
        let gateway = GatewayClient(baseURL: client.baseURL)
        let publicKey = JSONValue.string(identity.publicKey.base64EncodedString())
        let challenge = try await gateway.post("/api/auth/challenge", ["public_key": publicKey])
        guard let nonce = challenge["nonce"]?.stringValue else {
            warn("error: the gateway sent no nonce")
            throw ExitCode(1)
        }
        let signature = try identity.sign(LoginProtocol.message(nonce: nonce)).base64EncodedString()
        let login = try await gateway.post(
            "/api/auth/verify",
            ["public_key": publicKey, "nonce": .string(nonce), "signature": .string(signature)]
        )
        say("token=\(login["token"]?.stringValue ?? "")")
        say("expires_at=\(login["expires_at"]?.stringValue ?? "")")
        say("user_id=\(login["user_id"]?.stringValue ?? "")")
    }
}
