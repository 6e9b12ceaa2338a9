import ArgumentParser
import Foundation
import HearthCore
import HearthGateway
import HearthMesh
import Logging

/// `hearth invite`: invitations into a private network, run on the gateway's machine.
struct InviteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invite",
        abstract: "Create, list and revoke invites into this gateway's private network.",
        discussion: """
            Works on the gateway's data folder (its key signs invites, its database counts their uses), so run it \
            where the gateway runs; it is safe while the gateway is running. A node joins with --invite <token>.
            """,
        subcommands: [Create.self, List.self, Revoke.self]
    )

    struct GatewayFolder: ParsableArguments {
        @Option(help: "The gateway's data folder (env: HEARTH_DATA_DIR; default: the per-user data folder + /gateway).")
        var dataDir: String?

        @Option(help: "The gateway's PostgreSQL database, if it uses one (env: HEARTH_DATABASE_URL; see `hearth gateway --help`).")
        var database: String?

        var path: String { dataDir ?? CommandEnvironment().defaultDataDirectory + "/gateway" }

        func database() async throws -> GatewayDatabase {
            let database = try await GatewayDatabase.open(
                url: try GatewayOptions.parseDatabaseURL(self.database ?? CommandEnvironment()["HEARTH_DATABASE_URL"]),
                directory: path,
                logger: Logger(label: "hearth")
            )
            try await database.migrate()
            return database
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sign a new invite and print its token.")

        @OptionGroup var folder: GatewayFolder

        @Option(help: "How many nodes may join with it.")
        var maxUses: Int = 1

        @Option(help: "How long it stays valid (e.g. 7d, 12h, 30m).")
        var expires: String = "7d"

        @Option(help: "Sign with the network key the gateways share (`hearth gateway --network-key`): the invite is good on all of them.")
        var networkKey: String?

        func validate() throws {
            guard (1...100_000).contains(maxUses) else { throw ValidationError("--max-uses must be between 1 and 100000") }
            _ = try Self.lifetime(expires)
        }

        /// `7d` as well as the durations `parseDuration` takes.
        static func lifetime(_ text: String) throws -> TimeInterval {
            if text.hasSuffix("d"), let days = Double(text.dropLast()), days > 0 { return days * 86400 }
            return try parseDuration(text, option: "--expires").seconds
        }

        func run() async throws {
            let key = try networkKey.map { try KeyFile.load($0) } ?? GatewayIdentity.loadOrCreate(in: folder.path)
            let expiresAt = Date() + (try Self.lifetime(expires))
            let invite = try InviteToken.issue(gateway: key, maxUses: maxUses, expiresAt: expiresAt)
            try await folder.database().insert(
                InviteRecord(id: invite.id, roles: "node", maxUses: maxUses, expiresAt: expiresAt, createdAt: Date(), revokedAt: nil)
            )
            say("id=\(invite.id)")
            say("expires_at=\(ISO8601DateFormatter().string(from: expiresAt))")
            say("token=\(invite.token)")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List invites with their uses.")

        @OptionGroup var folder: GatewayFolder

        func run() async throws {
            let formatter = ISO8601DateFormatter()
            for invite in try await folder.database().invites() {
                let state = invite.revokedAt != nil ? "revoked" : (invite.expiresAt <= Date() ? "expired" : "live")
                say(
                    "\(invite.id)  uses=\(invite.uses ?? 0)/\(invite.maxUses)  expires=\(formatter.string(from: invite.expiresAt))  \(state)"
                )
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke an invite: no new node joins with it.")

        @OptionGroup var folder: GatewayFolder

        @Argument(help: "The invite id (from `hearth invite list`).")
        var id: String

        func run() async throws {
            guard try await folder.database().revokeInvite(id) else {
                throw ValidationError("no live invite with id \(id)")
            }
            say("revoked=\(id)")
        }
    }
}
