import ArgumentParser
import HearthCore

/// `hearth devices`: the nodes your account certified, as a gateway sees them.
struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List or revoke the devices (nodes) your account key certified.",
        subcommands: [List.self, Revoke.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List your devices this gateway has seen.")

        @OptionGroup var account: AccountLogin

        func run() async throws {
            let answer = try await account.client().get("/api/devices")
            for device in answer["data"]?.arrayValue ?? [] {
                let state = device["revoked"] == true ? "revoked" : (device["online"] == true ? "online" : "offline")
                say(
                    "\(device["id"]?.stringValue ?? "?")  \(device["name"]?.stringValue ?? "")  \(state)  last_seen=\(device["last_seen"]?.stringValue ?? "")"
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke one device: its link closes and its certificate is refused from now on. Your other devices keep working."
        )

        @OptionGroup var account: AccountLogin

        @Argument(help: "The device's NodeID (from `hearth devices list` or `hearth keys show` on that machine).")
        var device: String

        func validate() throws {
            guard NodeID(device) != nil else { throw ValidationError("'\(device)' is not a NodeID (64 lowercase hex characters)") }
        }

        func run() async throws {
            _ = try await account.client().delete("/api/devices/\(device)")
            say("revoked=\(device)")
        }
    }
}

/// The gateway and the key to log in to it with, for commands that act as an account.
struct AccountLogin: ParsableArguments {
    @OptionGroup var client: ClientOptions

    @Option(help: "The key to log in with (default: user.key in the per-user data folder; an operator may use the gateway's gateway.key).")
    var key: String?

    func client() async throws -> GatewayClient {
        try await GatewayClient(baseURL: client.baseURL).loggedIn(as: try loadUserKey(key)).client
    }
}
