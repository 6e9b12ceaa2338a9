import ArgumentParser
import Foundation
import HearthCore
import HearthMesh
import HearthNode

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
        let identity = try loadUserKey(key)
        let (_, login) = try await GatewayClient(baseURL: client.baseURL).loggedIn(as: identity)
        say("token=\(login["token"]?.stringValue ?? "")")
        say("expires_at=\(login["expires_at"]?.stringValue ?? "")")
        say("user_id=\(login["user_id"]?.stringValue ?? "")")
    }
}

/// Loads a person's key (`--key`, default `user.key` in the per-user data folder) with a message that says how to
/// make one.
func loadUserKey(_ path: String?) throws -> IdentityKey {
    let path = path ?? CommandEnvironment().defaultDataDirectory + "/user.key"
    do {
        return try KeyFile.load(path)
    } catch let error as KeyFileError {
        throw ValidationError("\(error.description). Make a key with: hearth keys new --file \(path)")
    }
}
