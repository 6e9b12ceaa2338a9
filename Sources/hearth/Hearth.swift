import ArgumentParser
import HearthCLI
import NIOCore

/// The `hearth` executable: the root command lives in HearthCLI, so it can be parsed and run in tests. Only the
/// executable sizes SwiftNIO's shared event loop group, which must happen before anything uses it.
@main
struct Hearth: AsyncParsableCommand {
    static let configuration = HearthCommand.configuration

    static func main() async {
        do {
            var command = try parseAsRoot()
            if let loops = (command as? any EventLoopSized)?.eventLoopCount { NIOSingletons.groupLoopCountSuggestion = loops }
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
