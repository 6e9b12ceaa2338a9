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
        subcommands: [New.self, Show.self, ExportPublic.self, CertifyDevice.self]
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
            } catch let error as KeyFileError {
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
            } catch let error as KeyFileError {
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

    struct CertifyDevice: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "certify-device",
            abstract: "Sign a device certificate: your account key vouches for one of your nodes.",
            discussion: """
                The certificate holds the account's and the device's public keys, the device name, its role and \
                validity. Put it in the node's data folder as device.cert (the default --out with --node-dir), or \
                pass it with `hearth node --device-cert`. Revoke one device with `hearth devices revoke`.
                """
        )

        @Option(help: "Your account key (default: user.key in the per-user data folder).")
        var account: String?

        @Option(help: "The node's data folder: its node.key gives the device key, and device.cert is written there.")
        var nodeDir: String?

        @Option(help: "Or the device's public key as PEM (from `hearth keys export-public` on that machine).")
        var devicePublic: String?

        @Option(help: "A name for the device in listings.")
        var name: String = ProcessInfo.processInfo.hostName

        @Option(help: "Days the certificate stays valid.")
        var days: Int = 365

        @Option(help: "Where to write the certificate (default: <node-dir>/device.cert, else standard output).")
        var out: String?

        func validate() throws {
            guard (nodeDir == nil) != (devicePublic == nil) else { throw ValidationError("give exactly one of --node-dir and --device-public") }
            guard (1...3650).contains(days) else { throw ValidationError("--days must be between 1 and 3650") }
        }

        func run() throws {
            let accountKey = try loadUserKey(account)
            let deviceKey: Data
            if let nodeDir {
                do {
                    deviceKey = try KeyFile.load(NodeIdentity.keyPath(in: nodeDir)).publicKey
                } catch let error as KeyFileError {
                    throw ValidationError("\(error.description) (start the node once to make its key)")
                }
            } else {
                guard let text = try? String(contentsOfFile: devicePublic!, encoding: .utf8) else {
                    throw ValidationError("cannot read \(devicePublic!)")
                }
                do {
                    deviceKey = try IdentityKey.publicKey(fromPEM: text)
                } catch {
                    throw ValidationError("\(devicePublic!): \(error.description)")
                }
            }
            let certificate = try DeviceCertificate.issue(
                account: accountKey,
                deviceKey: deviceKey,
                deviceName: name,
                validFor: TimeInterval(days) * 86400
            )
            let destination = out ?? nodeDir.map { ($0 as NSString).appendingPathComponent("device.cert") }
            if let destination {
                try (certificate.token + "\n").write(toFile: destination, atomically: true, encoding: .utf8)
                say("file=\(destination)")
            } else {
                say(certificate.token)
            }
            say("account=\(certificate.account)")
            say("device=\(certificate.device)")
        }
    }
}
