import ArgumentParser
import HearthCLI

/// The `hearth` executable: the root command lives in HearthCLI, so it can be parsed and run in tests.
@main
struct Hearth: AsyncParsableCommand {
    static let configuration = HearthCommand.configuration
}
