import ArgumentParser
import Foundation
import HearthCore
import Logging

/// Reads settings from the environment, for values no flag gave.
struct CommandEnvironment {
    var values: [String: String] = ProcessInfo.processInfo.environment

    subscript(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    /// The per-user data folder: `$HEARTH_DATA_DIR`, else `$XDG_DATA_HOME/hearth`, else `~/.local/share/hearth`.
    var defaultDataDirectory: String {
        if let explicit = self["HEARTH_DATA_DIR"] { return explicit }
        if let xdg = self["XDG_DATA_HOME"] { return xdg + "/hearth" }
        return (self["HOME"] ?? NSHomeDirectory()) + "/.local/share/hearth"
    }
}

/// Sets up logging to standard error. Only the executable's commands call this.
func bootstrapLogging(_ options: LoggingOptions, environment: CommandEnvironment = CommandEnvironment()) throws -> Logger {
    let name = options.logLevel ?? environment["LOG_LEVEL"] ?? "info"
    guard let level = Logger.Level(rawValue: name.lowercased()) else {
        throw ValidationError("unknown log level '\(name)'; use trace, debug, info, notice, warning, error or critical")
    }
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: "hearth")
}

/// Prints a line on standard output at once (stdout is a pipe in tests).
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Prints a line on standard error.
func warn(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Parses a duration such as `5s`, `500ms`, `2m` or a bare number of seconds.
func parseDuration(_ text: String, option: String) throws -> Duration {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let number = Double(text.dropLast(suffix.count)), number > 0 { return .milliseconds(Int64(number * factor * 1000)) }
    }
    if let number = Double(text), number > 0 { return .milliseconds(Int64(number * 1000)) }
    throw ValidationError("\(option) takes a positive duration such as 5s, 500ms or 2m, not '\(text)'")
}

/// Parses a size such as `6GiB`, `512MiB`, `8G` or a bare number of bytes (binary units either way).
func parseBytes(_ text: String, option: String) throws -> UInt64 {
    let units: [(String, UInt64)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)]
    for (suffix, factor) in units where text.hasSuffix(suffix) {
        if let number = Double(text.dropLast(suffix.count)), number > 0 { return UInt64(number * Double(factor)) }
    }
    if let number = UInt64(text), number > 0 { return number }
    throw ValidationError("\(option) takes a size such as 6GiB or 512MiB, not '\(text)'")
}
