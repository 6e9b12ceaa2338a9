import ArgumentParser
import HearthCore

/// `hearth pools`: the pools a gateway runs (models split over several nodes), and for operators, creating and
/// stopping them.
struct PoolsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pools",
        abstract: "List a gateway's pools (models split over several nodes); operators create and stop them.",
        discussion: """
            Creating and stopping needs an operator: log in with the gateway's own key (--key <gateway data dir>/gateway.key) \
            or with an account the gateway names with --operator.
            """,
        subcommands: [List.self, Create.self, Stop.self],
        defaultSubcommand: List.self
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every pool: model, state, head, members and their layers.")

        @OptionGroup var client: ClientOptions

        func run() async throws {
            let pools = try await GatewayClient(baseURL: client.baseURL).get("/api/pools")["pools"]?.arrayValue ?? []
            if pools.isEmpty { say("No pools on \(client.baseURL).") }
            for pool in pools {
                let since = pool["sinceSeconds"]?.integerValue ?? 0
                say(
                    "\(pool["id"]?.stringValue ?? "?")  \(pool["model"]?.stringValue ?? "?")  \(pool["state"]?.stringValue ?? "?") for \(since) s  (\(pool["progress"]?.stringValue ?? ""))"
                )
                for member in pool["members"]?.arrayValue ?? [] {
                    let node = member["node"]?.stringValue?.prefix(12) ?? "?"
                    let memory = UInt64(member["memoryBytes"]?.integerValue ?? 0).binaryBytes
                    say("    \(member["role"]?.stringValue ?? "?")  \(node)  layers=\(member["layers"]?.integerValue ?? 0)  memory=\(memory)")
                }
                if let incident = pool["lastIncident"], incident != .null {
                    say("    last incident: \(incident["kind"]?.stringValue ?? "?"): \(incident["detail"]?.stringValue ?? "")")
                }
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a pool for a pinned catalog model.")

        @OptionGroup var login: AccountLogin

        @Argument(help: "The catalog id of the model.")
        var model: String

        @Option(help: "Use exactly these nodes (NodeIDs, comma-separated); by default the gateway chooses.")
        var nodes: String?

        func validate() throws {
            guard ModelID(model) != nil else { throw ValidationError("'\(model)' is not a model id") }
            for node in nodes?.split(separator: ",") ?? [] where NodeID(String(node)) == nil {
                throw ValidationError("'\(node)' is not a NodeID (64 lowercase hex characters)")
            }
        }

        func run() async throws {
            var body: JSONValue = ["model": .string(model)]
            if let nodes { body["nodes"] = .array(nodes.split(separator: ",").map { .string(String($0)) }) }
            let answer = try await login.client().post("/api/pools", body)
            say("pool=\(answer["id"]?.stringValue ?? "?")")
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a pool: its nodes get their memory back, and it is not planned again.")

        @OptionGroup var login: AccountLogin

        @Argument(help: "The pool's id (p- and 12 hex digits, from `hearth pools`).")
        var id: String

        func validate() throws {
            guard PoolID(id) != nil else { throw ValidationError("'\(id)' is not a pool id (p- and 12 lowercase hex digits)") }
        }

        func run() async throws {
            _ = try await login.client().delete("/api/pools/\(id)")
            say("stopping=\(id)")
        }
    }
}
