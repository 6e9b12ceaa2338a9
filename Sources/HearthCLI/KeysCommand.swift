import ArgumentParser
import Foundation
import HearthCore
import HearthMesh
import HearthNode

/// `hearth keys`: make and inspect Ed25519 identity keys.
struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Make and inspect Ed25519 identity keys (a node's NodeID is the SHA-256 of its public key).",
        subcommands: [New.self, Show.self, ExportPublic.self]
    )

    /// Which key file a subcommand works on.
    struct KeyFileOptions: ParsableArguments {
        @Option(help: "The key file (default: node.key in the node's data folder, env: HEARTH_DATA_DIR).")
        var file: String?

        var path: String {
            file ?? NodeIdentity.keyPath(in: CommandEnvironment().defaultDataDirectory + "/node")
        }

        func load() throws -> IdentityKey {
            do {
                return try KeyFile.load(path)
            } catch let error as NodeStartError {
                throw ValidationError(error.description)
            }
        }
    }

    struct New: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Make a new key file (owner-only), and print its NodeID.")

        @OptionGroup var key: KeyFileOptions

        @Flag(help: "Replace an existing key file. The old identity is lost.")
        var force = false

        func run() throws {
            let identity = IdentityKey.generate()
            do {
                try KeyFile.write(identity, to: key.path, replacing: force)
            } catch let error as NodeStartError {
                throw ValidationError(error.description + (force ? "" : " (use --force to replace it)"))
            }
            say("node-id=\(identity.nodeID)")
            say("file=\(key.path)")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a key's NodeID, short id and public key.")

        @OptionGroup var key: KeyFileOptions

        func run() throws {
            let identity = try key.load()
            say("node-id=\(identity.nodeID)")
            say("short=\(identity.nodeID.short)")
            say("public-key=\(identity.publicKey.base64EncodedString())")
        }
    }

    struct ExportPublic: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-public",
            abstract: "Print the public key as PEM, to share with a gateway or an account."
        )

        @OptionGroup var key: KeyFileOptions

        func run() throws {
            FileHandle.standardOutput.write(Data(try key.load().publicKeyPEM.utf8))
        }
    }
}
