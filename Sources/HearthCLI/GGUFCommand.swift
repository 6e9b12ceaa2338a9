import ArgumentParser
import Foundation
import HearthCore

/// `hearth gguf inspect FILE`: a GGUF file's metadata and tensor table, read from its header only.
struct GGUFCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gguf",
        abstract: "Look inside GGUF model files.",
        subcommands: [Inspect.self]
    )

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a GGUF file's metadata (long arrays such as the tokenizer summarised) and its tensor count.",
            discussion: "Reads only the header, growing the read until the header is complete; the weights are never loaded."
        )

        @Argument(help: "The GGUF file.")
        var file: String

        @Flag(help: "Also list every tensor with its shape and type.")
        var tensors = false

        func run() throws {
            guard let handle = FileHandle(forReadingAtPath: file) else { throw ValidationError("cannot open \(file)") }
            defer { try? handle.close() }
            var length: UInt64 = 1 << 20
            var header: GGUFHeader?
            while header == nil {
                try handle.seek(toOffset: 0)
                let bytes = try handle.read(upToCount: Int(length)) ?? Data()
                switch Result(catching: { () throws(GGUFError) in try GGUFHeader(bytes: bytes) }) {
                case .success(let parsed):
                    header = parsed
                case .failure(.truncated(let needed)) where UInt64(bytes.count) == length && needed <= 1 << 30:
                    length = max(needed, length * 2)
                case .failure(let error):
                    throw ValidationError("\(file): \(error.description)")
                }
            }
            guard let header else { return }
            say("version=\(header.version)")
            for (key, value) in header.metadata { say("\(key)=\(Self.describe(value))") }
            say("tensors=\(header.tensors.count)")
            say("data_offset=\(header.dataOffset)")
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
