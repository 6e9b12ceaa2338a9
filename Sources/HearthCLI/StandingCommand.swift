import ArgumentParser
import HearthCore

/// `hearth standing`: what you contributed and consumed, and your token quota.
struct StandingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "standing",
        abstract: "Show your contribution, consumption, standing and token quota on a gateway.",
        discussion: "With --key you log in as that account; without it you see the anonymous quota of your address."
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "Your account key; omit it to see the anonymous view.")
    var key: String?

    func run() async throws {
        var gateway = GatewayClient(baseURL: client.baseURL)
        if let key { gateway = try await gateway.loggedIn(as: try loadUserKey(key)).client }
        let standing = try await gateway.get("/api/reciprocity/standing")
        for field in [
            "identity", "contributed_tokens", "consumed_tokens", "standing", "quota_tokens_per_hour", "remaining_tokens", "full_again_in_seconds",
        ] {
            let value = standing[field]
            say("\(field)=\(value?.stringValue ?? value?.integerValue.map(String.init) ?? "-")")
        }
    }
}
