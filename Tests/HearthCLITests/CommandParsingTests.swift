import ArgumentParser
import Foundation
import HearthTesting
import NIOCore
import Testing

@testable import HearthCLI
@testable import HearthCore
@testable import HearthGateway
@testable import HearthNode

struct CommandParsingTests {
    @Test func refusesOutOfRangePortsAndBadDurationsWithClearMessages() {
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["gateway", "--port", "70000"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["gateway", "--node-ttl", "soon"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["node", "--parallel", "0"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["node", "--model", "x.gguf"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["node", "--memory", "lots"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["gateway", "--mesh-port", "-1"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["node", "--link-timeout", "never"]) }
        let message = HearthCommand.message(for: ValidationError("--node-ttl takes a positive duration such as 5s, 500ms or 2m, not 'soon'"))
        #expect(message.contains("5s"))
    }

    @Test func servingCommandsRunHalfTheCoresAsEventLoopsUnlessTold() throws {
        func loops(_ arguments: [String]) throws -> Int? { (try HearthCommand.parseAsRoot(arguments) as? any EventLoopSized)?.eventLoopCount }
        let half = max(1, System.coreCount / 2)
        #expect(try loops(["gateway"]) == half)
        #expect(try loops(["node"]) == half)
        #expect(try loops(["up"]) == 1, "hearth up leaves the cores to its engine")
        #expect(try loops(["gateway", "--event-loops", "3"]) == 3)
        #expect(try loops(["node", "--event-loops", "2"]) == 2)
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["gateway", "--event-loops", "0"]) }
    }

    @Test func parsesEveryCommand() throws {
        #expect(try HearthCommand.parseAsRoot(["up", "--port", "0"]) is UpCommand)
        #expect(try HearthCommand.parseAsRoot(["gateway", "--trusted-proxy", "10.0.0.1", "--node-ttl", "2s"]) is GatewayRunCommand)
        #expect(try HearthCommand.parseAsRoot(["gateway", "join-string", "--advertise-host", "hearth.example"]) is JoinStringCommand)
        #expect(try HearthCommand.parseAsRoot(["node", "--join", "127.0.0.1:7070#\(String(repeating: "a", count: 64))"]) is NodeCommand)
        #expect(try HearthCommand.parseAsRoot(["engine", "install"]) is EngineCommand.Install)
        #expect(try HearthCommand.parseAsRoot(["chat", "hello", "there"]) is ChatCommand)
        #expect(try HearthCommand.parseAsRoot(["models"]) is ModelsCommand)
        #expect(try HearthCommand.parseAsRoot(["catalog"]) is CatalogCommand.List)
        #expect(try HearthCommand.parseAsRoot(["catalog", "pin", "m:q8_0", "--sha256", "ab"]) is CatalogCommand.Pin)
        #expect(try HearthCommand.parseAsRoot(["size", "m", "--context", "2048"]) is SizeCommand)
        #expect(try HearthCommand.parseAsRoot(["node", "--model", "a", "--model", "b", "--memory", "6GiB"]) is NodeCommand)
        // `hearth up` lends a quarter by default; 0 lends nothing, as its help says.
        #expect(try HearthCommand.parseAsRoot(["up", "--pool-memory", "0"]) is UpCommand)
        #expect(try HearthCommand.parseAsRoot(["up", "--pool-memory", "0%"]) is UpCommand)
    }

    @Test func gatewayOptionsBecomeConfiguration() throws {
        let command = try #require(
            try HearthCommand.parseAsRoot(["gateway", "--port", "0", "--rate-limit", "7", "--trusted-proxy", "10.0.0.1", "--node-ttl", "1500ms"])
                as? GatewayRunCommand
        )
        let configuration = try command.gateway.configuration(dataDirectory: "/tmp/x")
        #expect(configuration.port == 0)
        #expect(configuration.rateLimitPerMinute == 7)
        #expect(configuration.trustedProxies == ["10.0.0.1"])
        #expect(configuration.nodeTTL == .milliseconds(1500))
    }

    /// A plain gateway polls idle nodes every 5 s with a 15 s TTL; `hearth up`, whose node shares the machine, every
    /// 20 s with 60 s, so an idle laptop sleeps; `--node-ttl` sets it for either.
    @Test func hearthUpPollsItsOwnNodeLessOften() throws {
        let plain = try #require(try HearthCommand.parseAsRoot(["gateway"]) as? GatewayRunCommand).gateway.configuration(dataDirectory: "/tmp/x")
        #expect(plain.nodeTTL == .seconds(15) && plain.linkPollInterval == .seconds(5))
        let up = try #require(try HearthCommand.parseAsRoot(["up"]) as? UpCommand).gateway.configuration(dataDirectory: "/tmp/x", localMesh: true)
        #expect(up.nodeTTL == .seconds(60) && up.linkPollInterval == .seconds(20))
        let told = try #require(try HearthCommand.parseAsRoot(["up", "--node-ttl", "9s"]) as? UpCommand)
            .gateway.configuration(dataDirectory: "/tmp/x", localMesh: true)
        #expect(told.nodeTTL == .seconds(9) && told.linkPollInterval == .seconds(3))
    }

    @Test func durationsTakeUnits() throws {
        #expect(try parseDuration("500ms", option: "x") == .milliseconds(500))
        #expect(try parseDuration("2m", option: "x") == .seconds(120))
        #expect(try parseDuration("3", option: "x") == .seconds(3))
        #expect(throws: ValidationError.self) { try parseDuration("-1s", option: "x") }
    }
}

struct NodeConfigFileTests {
    func write(_ text: String) throws -> String {
        let path = try TestEnvironment.temporaryDirectory("config") + "/node.json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func readsKnownKeys() throws {
        let file = try NodeConfigFile.load(
            try write(
                #"{"threads": 3, "ctx_size": 1024, "join": "g:7070#\#(String(repeating: "c", count: 64))", "aliases": ["a"], "models": ["m"], "memory": "6GiB"}"#
            )
        )
        #expect(file.models == ["m"])
        #expect(file.memory == "6GiB")
        #expect(file.threads == 3)
        #expect(file.ctxSize == 1024)
        #expect(file.join == "g:7070#" + String(repeating: "c", count: 64))
        #expect(file.aliases == ["a"])
    }

    @Test func readsABackendAndItsModels() throws {
        let file = try NodeConfigFile.load(
            try write(#"{"backend": "openai:http://127.0.0.1:11434/v1", "backend_models": {"smollm2:135m": "smollm2-135m-instruct:q4_1"}}"#)
        )
        #expect(file.backend == "openai:http://127.0.0.1:11434/v1")
        #expect(file.backendModels == ["smollm2:135m": "smollm2-135m-instruct:q4_1"])
        #expect(throws: ValidationError.self) { try NodeConfigFile.load(try write(#"{"backend_models": ["a=b"]}"#)) }
    }

    @Test func refusesUnknownKeysWrongTypesAndNonJSON() throws {
        #expect(throws: ValidationError.self) { try NodeConfigFile.load(try write(#"{"thread": 3}"#)) }
        // A file path and a hash are no longer node settings: models come from the catalog.
        #expect(throws: ValidationError.self) { try NodeConfigFile.load(try write(#"{"sha256": "ab"}"#)) }
        #expect(throws: ValidationError.self) { try NodeConfigFile.load(try write(#"{"threads": "three"}"#)) }
        #expect(throws: ValidationError.self) { try NodeConfigFile.load(try write(#"{"gateway": "http://g:1"}"#)) }
        #expect(throws: ValidationError.self) { try NodeConfigFile.load(try write("threads = 3")) }
        #expect(throws: ValidationError.self) { try NodeConfigFile.load("/nonexistent/node.json") }
        do {
            _ = try NodeConfigFile.load(try write(#"{"thread": 3}"#))
        } catch let error as ValidationError {
            #expect(error.message.contains("unknown key 'thread'"))
        }
    }
}

struct RunFailureTests {
    @Test func namesTheCommandThatWasRunning() throws {
        let node = try HearthCommand.parseAsRoot(["node", "--join", "127.0.0.1:9#" + String(repeating: "a", count: 64)])
        let told = HearthCommand.runFailure(ValidationError("no such model"), of: node)
        #expect(told == "Error: no such model\n  See 'hearth node --help' for more information.")
        #expect(HearthCommand.commandPath(to: NodeCommand.self) == ["node"])
        #expect(HearthCommand.commandPath(to: CatalogCommand.self) == ["catalog"])
        // Only a mistake in what was asked is told this way; anything else is ArgumentParser's to print.
        struct Broken: Error {}
        #expect(HearthCommand.runFailure(Broken(), of: node) == nil)
    }
}

struct BackendOptionTests {
    @Test func takesAnOpenAIServerAndItsModelNames() throws {
        #expect(try BackendSettings.parse("openai:http://127.0.0.1:11434/v1/") == "http://127.0.0.1:11434/v1")
        #expect(try BackendSettings.mapping("llama3.2:1b=llama-3.2-1b-instruct:q8_0") == ("llama3.2:1b", "llama-3.2-1b-instruct:q8_0"))
        let node = try HearthCommand.parseAsRoot([
            "node", "--backend", "openai:http://192.168.1.5:8000/v1", "--backend-model", "a=smollm2-135m-instruct:q4_1",
            "--backend-check-interval", "2s",
        ])
        #expect(node is NodeCommand)
    }

    /// The server's key comes from a file (or the environment), checked before it goes into a header.
    @Test func takesTheServersKeyFromAFileOrTheEnvironmentAndChecksIt() throws {
        let directory = try TestEnvironment.temporaryDirectory("backend-key")
        func file(_ text: String) throws -> String {
            let path = (directory as NSString).appendingPathComponent("key-\(UUID().uuidString)")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let none = CommandEnvironment(values: [:])
        #expect(try NodeOptions.backendAPIKey(file: try file("sk-owner-1\n"), environment: none) == "sk-owner-1")
        #expect(try NodeOptions.backendAPIKey(file: nil, environment: CommandEnvironment(values: ["HEARTH_BACKEND_API_KEY": "k2"])) == "k2")
        #expect(try NodeOptions.backendAPIKey(file: nil, environment: none) == nil)
        // The file wins over the environment.
        let both = CommandEnvironment(values: ["HEARTH_BACKEND_API_KEY": "from-env"])
        #expect(try NodeOptions.backendAPIKey(file: try file("from-file"), environment: both) == "from-file")
        // Nothing that could split a header or hide in one.
        for bad in ["", "  \n", "two words", "line\r\nx-injected: 1", "caf\u{e9}", String(repeating: "k", count: 5000)] {
            #expect(throws: ValidationError.self, "\(bad.prefix(20).debugDescription)") {
                try NodeOptions.backendAPIKey(file: try file(bad), environment: none)
            }
        }
        #expect(throws: ValidationError.self) { try NodeOptions.backendAPIKey(file: "/nonexistent/key", environment: none) }
    }

    /// `--backend-ca-file` must hold PEM certificates; a file that holds none (a key, a DER file, nothing) is refused
    /// when the node starts, not at its first https request.
    @Test func takesTheServersAuthorityFromAPEMFileAndRefusesOneWithoutACertificate() async throws {
        let directory = try TestEnvironment.temporaryDirectory("backend-ca")
        func file(_ text: String) throws -> String {
            let path = (directory as NSString).appendingPathComponent("ca-\(UUID().uuidString).pem")
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let front = try await TLSFront(to: 9)
        defer { front.close() }
        #expect(try NodeOptions.backendTrust(file: try file(front.authorityPEM)) != nil)
        #expect(try NodeOptions.backendTrust(file: nil) == nil)
        for bad in ["", "not a certificate", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"] {
            #expect(throws: ValidationError.self, "\(bad.prefix(20).debugDescription)") { try NodeOptions.backendTrust(file: try file(bad)) }
        }
        #expect(throws: ValidationError.self) { try NodeOptions.backendTrust(file: "/nonexistent/ca.pem") }
    }

    @Test func refusesWhatCannotBeAServerOrAMappingWithTheReason() {
        for (arguments, reason) in [
            (["--backend", "http://127.0.0.1:11434/v1"], "openai:URL"),
            (["--backend", "openai:ftp://host/v1"], "http(s)"),
            (["--backend", "openai:http://127.0.0.1:11434"], "must end in /v1"),
            (["--backend", "openai:http://h/v1", "--backend-model", "just-a-name"], "NAME=CATALOG_ID"),
            (["--backend", "openai:http://h/v1", "--backend-model", "a="], "NAME=CATALOG_ID"),
            (["--backend-model", "a=smollm2-135m-instruct:q4_1"], "needs --backend"),
            (["--backend-api-key-file", "/tmp/key"], "needs --backend"),
            (["--backend-ca-file", "/tmp/ca.pem"], "needs --backend"),
            (["--backend", "openai:http://h/v1", "--backend-model", "a=smollm2-135m-instruct:q4_1", "--backend-ca-file", "/tmp/ca.pem"], "https"),
            (["--backend", "openai:http://h/v1", "--backend-check-interval", "often"], "--backend-check-interval"),
            (["--backend", "openai:http://owner:secret@h/v1", "--backend-model", "a=smollm2-135m-instruct:q4_1"], "--backend-api-key-file"),
        ] {
            do {
                _ = try HearthCommand.parseAsRoot(["node"] + arguments)
                Issue.record("\(arguments) was accepted")
            } catch {
                let message = HearthCommand.message(for: error)
                #expect(message.contains(reason), "\(arguments): \(message)")
            }
        }
    }
}

struct ChatCommandTests {
    /// `hearth chat` sends what the web chat sends: the system prompt first, then the turns, streamed with usage.
    @Test func asksWithTheWebChatsRequestShape() throws {
        let command = try #require(
            try HearthCommand.parseAsRoot(["chat", "--system", "Answer in French.", "--temperature", "0.3", "--max-tokens", "40", "hi"])
                as? ChatCommand
        )
        let turns: [JSONValue] = [["role": "user", "content": "hi"]]
        let body = ChatCommand.body(
            model: "m:q8_0",
            system: command.system,
            turns: turns,
            maxTokens: command.maxTokens,
            temperature: command.temperature
        )
        #expect(body["messages"]?.arrayValue?.map { $0["role"]?.stringValue ?? "" } == ["system", "user"])
        #expect(body["messages"]?[0]?["content"] == "Answer in French.")
        #expect(body["stream"] == true)
        #expect(body["stream_options"]?["include_usage"] == true)
        #expect(body["max_tokens"] == 40)
        #expect(body["temperature"]?.doubleValue == 0.3)
        // Without them, no system message and the model's own temperature.
        let plain = ChatCommand.body(model: "m:q8_0", system: "  ", turns: turns, maxTokens: 10, temperature: nil)
        #expect(plain["messages"]?.arrayValue?.count == 1)
        #expect(plain["temperature"] == nil)
    }

    @Test func refusesATemperatureOrLimitOutOfRange() {
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["chat", "--temperature", "3", "hi"]) }
        #expect(throws: (any Error).self) { try HearthCommand.parseAsRoot(["chat", "--max-tokens", "0", "hi"]) }
    }
}
