import ArgumentParser
import Foundation
import HearthCore
import HearthNode

/// `hearth gguf inspect FILE|URL`: a GGUF file's metadata and tensor table, read from its header only.
struct GGUFCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf",
        abstract: "Look inside GGUF model files.",
        subcommands: [Inspect.self]
    )

    struct Inspect: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a GGUF file's metadata (long arrays such as the tokenizer summarised) and its tensor count.",
            discussion: """
                Reads only the header, growing the read until the header is complete; the weights are never loaded. \
                For an http(s) URL it fetches only the header with Range requests.
                """
        )

        @Argument(help: "The GGUF file, or its http(s) URL.")
        var file: String

        @Flag(help: "Also list every tensor with its shape and type.")
        var tensors = false

        func run() async throws {
            let header: GGUFHeader
            var size: UInt64?
            do {
                if file.hasPrefix("http://") || file.hasPrefix("https://") {
                    (header, size) = try await GGUFSource.header(url: file)
                } else {
                    header = try await GGUFSource.header(atPath: file)
                }
            } catch let error as GGUFSourceError {
                throw ValidationError(error.description)
            }
            say("version=\(header.version)")
            for (key, value) in header.metadata { say("\(key)=\(Self.describe(value))") }
            say("tensors=\(header.tensors.count)")
            say("data_offset=\(header.dataOffset)")
            if let size { say("file_size=\(size)") }
            if tensors {
                for tensor in header.tensors {
                    say("tensor \(tensor.name) \(tensor.dimensions.map(String.init).joined(separator: "x")) type=\(tensor.type)")
                }
            }
        }

        /// A value on one line; arrays longer than eight elements show their length and first elements.
        static func describe(_ value: GGUFValue) -> String {
            switch value {
            case .uint(let number): return "\(number)"
            case .int(let number): return "\(number)"
            case .float(let number): return "\(number)"
            case .bool(let flag): return "\(flag)"
            case .string(let text):
                // One line per key: newlines and tabs are shown escaped.
                let shown = String(text.prefix(120)).replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(of: "\t", with: "\\t")
                return text.count > 120 ? "\"\(shown)…\" (\(text.count) characters)" : "\"\(shown)\""
            case .array(_, let values) where values.count > 8:
                return "[\(values.prefix(3).map(describe).joined(separator: ", ")), …] (\(values.count) elements)"
            case .array(_, let values):
                return "[\(values.map(describe).joined(separator: ", "))]"
            }
        }
    }
}
