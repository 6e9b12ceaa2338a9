import ArgumentParser
import AsyncHTTPClient
import Foundation
import HearthCore
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// Where client commands find the gateway.
struct ClientOptions: ParsableArguments {
    @Option(help: "The gateway's base URL (env: HEARTH_URL).")
    var url: String?

    var baseURL: String { url ?? CommandEnvironment()["HEARTH_URL"] ?? "http://127.0.0.1:8080" }
}

/// `hearth models`: what the gateway can serve now, and what the network could run.
struct ModelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the models nodes serve now, then every catalog model with what it would take to run it.",
        discussion: "The capacity section comes from GET /api/capacity: alone on one node, split over several, or how many more nodes are needed."
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "Context in tokens per request that the capacity section sizes for.")
    var context: Int = 4096

    func validate() throws {
        guard context >= 1 else { throw ValidationError("--context must be at least 1") }
    }

    func run() async throws {
        let gateway = GatewayClient(baseURL: client.baseURL)
        let models = try await gateway.get("/v1/models")["data"]?.arrayValue ?? []
        if models.isEmpty {
            say("No model is ready on \(client.baseURL) yet.")
        } else {
            say(row(["MODEL", "NODES", "SHA256"], [40, 7]))
            for model in models {
                let nodes = model["hearth"]?["nodes"]?.integerValue ?? 0
                let sha = model["hearth"]?["sha256"]?.stringValue?.prefix(16) ?? ""
                say(row([model["id"]?.stringValue ?? "?", String(nodes), String(sha)], [40, 7]))
            }
        }
        let capacity = try await gateway.get("/api/capacity?context=\(context)")["data"]?.arrayValue ?? []
        say("")
        say("CAPACITY at \(context) tokens of context")
        say(row(["MODEL", "NEEDS", "NOW"], [40, 11]))
        for verdict in capacity {
            let needs = UInt64(verdict["estimate"]?["totalBytes"]?.integerValue ?? 0)
            say(row([verdict["model"]?.stringValue ?? "?", needs.binaryBytes, verdict["summary"]?.stringValue ?? ""], [40, 11]))
        }
    }
}

/// `hearth chat`: a streaming chat in the terminal.
struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model through the gateway, streaming the answer as it is generated.",
        discussion: "With a message argument it answers once and exits; without, it reads your messages line by line until EOF."
    )

    @OptionGroup var client: ClientOptions

    @Option(help: "The model to use (default: the first one the gateway lists).")
    var model: String?

    @Option(help: "Most tokens per answer.")
    var maxTokens: Int = 512

    @Option(help: "A system prompt that leads the conversation (e.g. \"Answer in French.\").")
    var system: String?

    @Option(help: "Sampling temperature, 0 to 2 (default: the model's).")
    var temperature: Double?

    @Option(help: "A login token or API key, for a gateway that requires one (env: HEARTH_TOKEN).")
    var token: String?

    @Argument(help: "A message to send; omit it to chat interactively.")
    var message: [String] = []

    func validate() throws {
        guard maxTokens > 0 else { throw ValidationError("--max-tokens must be positive") }
        if let temperature, !(0...2).contains(temperature) { throw ValidationError("--temperature must be from 0 to 2") }
    }

    /// The request the web chat sends too (chat.js): the system prompt first, then the turns, streamed with usage.
    static func body(model: String, system: String?, turns: [JSONValue], maxTokens: Int, temperature: Double?) -> JSONValue {
        var messages: [JSONValue] = []
        if let system, !system.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            messages.append(["role": "system", "content": .string(system)])
        }
        var body: JSONValue = [
            "model": .string(model), "messages": .array(messages + turns), "stream": true, "stream_options": ["include_usage": true],
            "max_tokens": .integer(Int64(maxTokens)),
        ]
        if let temperature { body["temperature"] = .number(temperature) }
        return body
    }

    func run() async throws {
        let gateway = GatewayClient(baseURL: client.baseURL, bearer: token ?? CommandEnvironment()["HEARTH_TOKEN"])
        let modelName: String
        if let model {
            modelName = model
        } else {
            guard let first = try await gateway.get("/v1/models")["data"]?.arrayValue?.first?["id"]?.stringValue else {
                warn("error: no model is ready on \(client.baseURL) yet")
                throw ExitCode(1)
            }
            modelName = first
        }
        var history: [JSONValue] = []
        let ask = { (turns: [JSONValue]) in
            try await gateway.streamChat(Self.body(model: modelName, system: system, turns: turns, maxTokens: maxTokens, temperature: temperature))
        }
        if !message.isEmpty {
            history.append(["role": "user", "content": .string(message.joined(separator: " "))])
            _ = try await ask(history)
            return
        }
        warn("Chatting with \(modelName). End with Ctrl-D.")
        while true {
            FileHandle.standardError.write(Data("> ".utf8))
            guard let line = readLine() else { break }
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            history.append(["role": "user", "content": .string(line)])
            let answer = try await ask(history)
            history.append(["role": "assistant", "content": .string(answer)])
        }
    }
}

/// A small client of the gateway's OpenAI API for the CLI.
struct GatewayClient {
    let baseURL: String
    /// A login token or API key sent as `Authorization: Bearer`.
    var bearer: String?
    /// Says nothing when the gateway cannot be reached, and gives up after 5 s instead of 10 minutes, for commands
    /// that can do without it (the client retries a refused connection until the timeout).
    var quiet = false

    init(baseURL: String, bearer: String? = nil, quiet: Bool = false) {
        self.baseURL = baseURL
        self.bearer = bearer
        self.quiet = quiet
    }

    /// Logs in with `identity` (challenge, signature, token) and returns a client that sends the token.
    func loggedIn(as identity: IdentityKey) async throws -> (client: GatewayClient, answer: JSONValue) {
        let publicKey = JSONValue.string(identity.publicKey.base64EncodedString())
        let challenge = try await post("/api/auth/challenge", ["public_key": publicKey])
        guard let nonce = challenge["nonce"]?.stringValue else {
            warn("error: the gateway sent no nonce")
            throw ExitCode(1)
        }
        let signature = try identity.sign(LoginProtocol.message(nonce: nonce)).base64EncodedString()
        let login = try await post("/api/auth/verify", ["public_key": publicKey, "nonce": .string(nonce), "signature": .string(signature)])
        return (GatewayClient(baseURL: baseURL, bearer: login["token"]?.stringValue), login)
    }

    func get(_ path: String) async throws -> JSONValue {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .GET
        let response = try await execute(request)
        let body = try await response.body.collect(upTo: 16 << 20)
        return try check(response, body)
    }

    func post(_ path: String, _ body: JSONValue) async throws -> JSONValue {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        let response = try await execute(request)
        return try check(response, try await response.body.collect(upTo: 1 << 20))
    }

    /// Sends a streaming chat request, prints the text as it arrives, and returns the whole answer.
    /// Streams a chat completion's text to standard output, then a newline; returns the text. An error event in the
    /// stream ends the command with its message.
    func streamChat(_ body: JSONValue) async throws -> String {
        var request = HTTPClientRequest(url: baseURL + "/v1/chat/completions")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        let response = try await execute(request)
        guard response.status == .ok else {
            _ = try check(response, try await response.body.collect(upTo: 1 << 20))
            return ""
        }
        var answer = ""
        var pending = ""
        for try await chunk in response.body {
            pending += String(buffer: chunk)
            while let end = pending.range(of: "\n\n") {
                let event = pending[pending.startIndex..<end.lowerBound]
                pending.removeSubrange(pending.startIndex..<end.upperBound)
                guard event.hasPrefix("data: "), !event.hasSuffix("[DONE]") else { continue }
                let payload = Data(event.dropFirst(6).utf8)
                if let error = (try? JSONDecoder().decode(JSONValue.self, from: payload))?["error"] {
                    FileHandle.standardOutput.write(Data("\n".utf8))
                    warn("error: \(error["message"]?.stringValue ?? "the stream ended with an error")")
                    throw ExitCode(1)
                }
                if let piece = (try? JSONDecoder().decode(CompletionChunk.self, from: payload))?.choices?.first?.content {
                    answer += piece
                    FileHandle.standardOutput.write(Data(piece.utf8))
                }
            }
        }
        FileHandle.standardOutput.write(Data("\n".utf8))
        return answer
    }

    func delete(_ path: String) async throws -> JSONValue {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .DELETE
        let response = try await execute(request)
        return try check(response, try await response.body.collect(upTo: 1 << 20))
    }

    private func execute(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        var request = request
        if let bearer { request.headers.add(name: "authorization", value: "Bearer \(bearer)") }
        do {
            return try await HTTPClient.shared.execute(request, timeout: .seconds(quiet ? 5 : 600))
        } catch {
            if !quiet { warn("error: cannot reach the gateway at \(baseURL) (\(error)). Is `hearth up` running?") }
            throw ExitCode(1)
        }
    }

    private func check(_ response: HTTPClientResponse, _ body: ByteBuffer) throws -> JSONValue {
        let json = try? JSONDecoder().decode(JSONValue.self, from: body)
        guard response.status.code < 400 else {
            warn("error: \(json?["error"]?["message"]?.stringValue ?? "HTTP \(response.status.code)")")
            throw ExitCode(1)
        }
        guard let json else {
            warn("error: the gateway's answer is not JSON")
            throw ExitCode(1)
        }
        return json
    }
}
