import ArgumentParser
import Foundation
import HearthCLI
import NIOCore

/// The `hearth` executable: the root command lives in HearthCLI, so it can be parsed and run in tests. Only the
/// executable sizes SwiftNIO's shared event loop group, which must happen before anything uses it.
@main
struct Hearth: AsyncParsableCommand {
    static let configuration = HearthCommand.configuration

    static func main() async {
        let parsed: any ParsableCommand
        do {
            parsed = try parseAsRoot()
        } catch {
            exit(withError: error)
        }
        do {
            var command = parsed
            if let loops = (command as? any EventLoopSized)?.eventLoopCount { NIOSingletons.groupLoopCountSuggestion = loops }
            if var command = command as? any AsyncParsableCommand {
                try await command.run()
            } else {
                try command.run()
            }
        } catch {
            // A mistake found while running names the command that found it, not the root's usage.
            guard let message = HearthCommand.runFailure(error, of: parsed) else { exit(withError: error) }
            FileHandle.standardError.write(Data((message + "\n").utf8))
            exit(withError: ExitCode.validationFailure)
        }
    }
}
