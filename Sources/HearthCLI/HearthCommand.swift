public import ArgumentParser
import HearthCore

/// `hearth`: run a gateway, a node, or both, and talk to them.
public struct HearthCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "hearth",
        abstract: "Run open LLMs together: a gateway with an OpenAI- and Ollama-compatible API, and nodes that serve models.",
        discussion: """
            Start here:  hearth up        (a gateway and a local node serving the default model)
            Then:        hearth chat      (a streaming chat in the terminal)
            """,
        version: HearthVersion.current,
        subcommands: [
            UpCommand.self, GatewayCommand.self, NodeCommand.self, EngineCommand.self, ChatCommand.self, ModelsCommand.self, KeysCommand.self,
            LoginCommand.self, DevicesCommand.self, InviteCommand.self, LedgerCommand.self, StandingCommand.self, GGUFCommand.self,
            CatalogCommand.self, SizeCommand.self, PoolsCommand.self,
        ]
    )

    public init() {}
}

/// Options every serving command shares.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error (env: LOG_LEVEL).")
    var logLevel: String?
}
