public import ArgumentParser

extension HearthCommand {
    /// What to print for a `ValidationError` that a command threw while running, after its arguments parsed (a model
    /// that is not pinned, a file that cannot be read): the message, and where that command's help is.
    ///
    /// ArgumentParser prints the root's usage for it (`Usage: hearth <subcommand>`), since by then it no longer knows
    /// which command was running: a newcomer who gave `hearth node` a wrong model was shown the list of commands.
    public static func runFailure(_ error: any Error, of command: any ParsableCommand) -> String? {
        guard let validation = error as? ValidationError else { return nil }
        let path = commandPath(to: type(of: command)).joined(separator: " ")
        return "Error: \(validation.message)\n  See 'hearth \(path)\(path.isEmpty ? "" : " ")--help' for more information."
    }

    /// The names leading from `hearth` to `target` (`["gateway", "run"]`), or none when it is not among them.
    static func commandPath(to target: any ParsableCommand.Type, from root: any ParsableCommand.Type = HearthCommand.self) -> [String] {
        for subcommand in root.configuration.subcommands {
            let name = subcommand.configuration.commandName ?? "\(subcommand)".lowercased()
            if subcommand == target { return [name] }
            let below = commandPath(to: target, from: subcommand)
            if !below.isEmpty { return [name] + below }
        }
        return []
    }
}
