import Foundation
import HearthTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// The bad-input table: hostile and malformed requests, sent as raw HTTP over a real socket to a gateway on loopback.
/// For each: the status, a well-formed error in the route's envelope (OpenAI's on `/v1` and `/api`, Ollama's on the
/// Ollama routes), a message, nothing stored that should not be, and a gateway that still serves a normal request.
/// The table is printed; docs/SECURITY.md keeps a copy.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct BadInputTableTests {
    enum Shape: String {
        /// `{"error":{"message","type","param","code"}}`
        case openAI = "OpenAI"
        /// `{"error":"message"}`
        case ollama = "Ollama"
        /// The HTTP parser's own answer: a status and no body.
        case bare = "bare"
        /// The gateway closes the connection without answering.
        case closed = "closed"
    }

    struct Case: Sendable {
        var name: String
        var raw: String
        var status: Int
        var shape: Shape
        /// The request reaches dispatch and is recorded as refused (a usage row with no tokens).
        var recorded = false
    }

    static func post(_ path: String, _ body: String, headers: String = "") -> String {
        "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\(headers)Connection: close\r\n\r\n\(body)"
    }

    static func get(_ path: String, headers: String = "") -> String {
        "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)Connection: close\r\n\r\n"
    }

    /// Arrays nested `levels` deep.
    static func deep(_ levels: Int) -> String { String(repeating: "[", count: levels) + String(repeating: "]", count: levels) }

    static let model = testModel.rawValue
    static let chat = "/v1/chat/completions"
    static func chatBody(_ extra: String) -> String {
        #"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}]\#(extra)}"#
    }

    static let cases: [Case] = [
        // OpenAI request bodies
        Case(name: "body is not JSON", raw: post(chat, "{"), status: 400, shape: .openAI),
        Case(name: "body is an array", raw: post(chat, "[]"), status: 400, shape: .openAI),
        Case(name: "body is a string", raw: post(chat, #""x""#), status: 400, shape: .openAI),
        // 300 levels cost the decoder 0.4 s of CPU (quadratic in depth); refused before decoding.
        Case(name: "nested 300 levels", raw: post(chat, chatBody(",\"x\":" + deep(300))), status: 400, shape: .openAI),
        Case(name: "Ollama chat nested 300 levels", raw: post("/api/chat", deep(300)), status: 400, shape: .ollama),
        Case(name: "login challenge nested 300 levels", raw: post("/api/auth/challenge", deep(300)), status: 400, shape: .openAI),
        Case(name: "embeddings without input", raw: post("/v1/embeddings", #"{"model":"\#(model)"}"#), status: 400, shape: .openAI),
        Case(name: "Ollama embed input is a number", raw: post("/api/embed", #"{"model":"\#(model)","input":5}"#), status: 400, shape: .ollama),
        Case(name: "no model", raw: post(chat, #"{"messages":[{"role":"user","content":"hi"}]}"#), status: 400, shape: .openAI),
        Case(name: "model is a number", raw: post(chat, #"{"model":5,"messages":[]}"#), status: 400, shape: .openAI),
        Case(name: "model is empty", raw: post(chat, #"{"model":"","messages":[]}"#), status: 400, shape: .openAI),
        Case(name: "no messages", raw: post(chat, #"{"model":"\#(model)"}"#), status: 400, shape: .openAI),
        Case(name: "messages is a string", raw: post(chat, #"{"model":"\#(model)","messages":"hi"}"#), status: 400, shape: .openAI),
        Case(name: "messages is empty", raw: post(chat, #"{"model":"\#(model)","messages":[]}"#), status: 400, shape: .openAI),
        Case(
            name: "unknown role",
            raw: post(chat, #"{"model":"\#(model)","messages":[{"role":"wizard","content":"x"}]}"#),
            status: 400,
            shape: .openAI
        ),
        Case(
            name: "content is a number",
            raw: post(chat, #"{"model":"\#(model)","messages":[{"role":"user","content":123}]}"#),
            status: 400,
            shape: .openAI
        ),
        Case(
            name: "image part for a text model",
            raw: post(chat, #"{"model":"\#(model)","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:,"}}]}]}"#),
            status: 400,
            shape: .openAI
        ),
        Case(name: "tools is not a list", raw: post(chat, chatBody(#","tools":"notalist""#)), status: 400, shape: .openAI),
        Case(name: "tool without function", raw: post(chat, chatBody(#","tools":[{"type":"function"}]"#)), status: 400, shape: .openAI),
        Case(name: "tool_choice unknown", raw: post(chat, chatBody(#","tool_choice":"sometimes""#)), status: 400, shape: .openAI),
        Case(name: "response_format unknown", raw: post(chat, chatBody(#","response_format":{"type":"bogus"}"#)), status: 400, shape: .openAI),
        Case(name: "max_tokens zero", raw: post(chat, chatBody(#","max_tokens":0"#)), status: 400, shape: .openAI),
        Case(name: "max_tokens above the ceiling", raw: post(chat, chatBody(#","max_tokens":100000000"#)), status: 400, shape: .openAI),
        Case(name: "max_tokens is a string", raw: post(chat, chatBody(#","max_tokens":"5""#)), status: 400, shape: .openAI),
        Case(name: "temperature out of range", raw: post(chat, chatBody(#","temperature":9"#)), status: 400, shape: .openAI),
        Case(name: "stream is a string", raw: post(chat, chatBody(#","stream":"yes""#)), status: 400, shape: .openAI),
        Case(name: "n above one", raw: post(chat, chatBody(#","n":2"#)), status: 400, shape: .openAI),
        Case(name: "stop holds numbers", raw: post(chat, chatBody(#","stop":[1,2]"#)), status: 400, shape: .openAI),
        Case(name: "stream_options is a string", raw: post(chat, chatBody(#","stream_options":"x""#)), status: 400, shape: .openAI),
        Case(
            name: "unknown model",
            raw: post(chat, #"{"model":"no-such-model:q8_0","messages":[{"role":"user","content":"hi"}]}"#),
            status: 404,
            shape: .openAI,
            recorded: true
        ),
        Case(name: "completion prompt is a number", raw: post("/v1/completions", #"{"model":"\#(model)","prompt":5}"#), status: 400, shape: .openAI),
        Case(name: "completion without prompt", raw: post("/v1/completions", #"{"model":"\#(model)"}"#), status: 400, shape: .openAI),
        Case(name: "JSON nested 100,000 deep", raw: post(chat, String(repeating: "[", count: 100_000)), status: 413, shape: .openAI),
        Case(name: "JSON nested 2,000 deep", raw: post(chat, String(repeating: "[", count: 2_000)), status: 400, shape: .openAI),
        Case(
            name: "body over the limit",
            raw: post(chat, chatBody(",\"pad\":\"" + String(repeating: "x", count: 8_000) + "\"")),
            status: 413,
            shape: .openAI
        ),
        Case(name: "GET on a POST route", raw: get(chat), status: 404, shape: .openAI),
        Case(name: "POST on a GET route", raw: post("/v1/models", "{}"), status: 404, shape: .openAI),
        Case(name: "unknown method", raw: "BREW /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", status: 400, shape: .bare),
        // Credentials
        Case(name: "forged login token", raw: get("/v1/models", headers: "Authorization: Bearer ht_forged\r\n"), status: 401, shape: .openAI),
        Case(
            name: "forged token, lower-case scheme",
            raw: get("/v1/models", headers: "Authorization: bearer ht_forged\r\n"),
            status: 401,
            shape: .openAI
        ),
        Case(name: "forged API key", raw: get("/v1/models", headers: "Authorization: Bearer hk_forged\r\n"), status: 401, shape: .openAI),
        Case(name: "create an API key anonymously", raw: post("/api/keys", "{}"), status: 401, shape: .openAI),
        Case(name: "list API keys anonymously", raw: get("/api/keys"), status: 401, shape: .openAI),
        Case(
            name: "revoke an API key anonymously",
            raw: "DELETE /api/keys/hk_x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            status: 401,
            shape: .openAI
        ),
        Case(name: "list devices anonymously", raw: get("/api/devices"), status: 401, shape: .openAI),
        Case(
            name: "revoke a device anonymously",
            raw: "DELETE /api/devices/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            status: 401,
            shape: .openAI
        ),
        Case(name: "challenge without a key", raw: post("/api/auth/challenge", "{}"), status: 400, shape: .openAI),
        Case(
            name: "challenge with a key that is not base64",
            raw: post("/api/auth/challenge", #"{"public_key":"%%%"}"#),
            status: 400,
            shape: .openAI
        ),
        Case(name: "challenge with a short key", raw: post("/api/auth/challenge", #"{"public_key":"AAAA"}"#), status: 400, shape: .openAI),
        Case(
            name: "verify an unknown nonce",
            raw: post(
                "/api/auth/verify",
                #"{"public_key":"\#(Data(count: 32).base64EncodedString())","nonce":"n","signature":"\#(Data(count: 64).base64EncodedString())"}"#
            ),
            status: 401,
            shape: .openAI
        ),
        Case(name: "verify without a signature", raw: post("/api/auth/verify", #"{"public_key":"AAAA","nonce":"n"}"#), status: 400, shape: .openAI),
        // Catalog and ledger queries
        Case(name: "capacity for a junk context", raw: get("/api/capacity?context=abc"), status: 400, shape: .openAI),
        Case(name: "capacity for zero slots", raw: get("/api/capacity?parallel=0"), status: 400, shape: .openAI),
        Case(name: "catalog for a huge context", raw: get("/api/catalog?context=99999999999"), status: 400, shape: .openAI),
        Case(name: "ledger after junk", raw: get("/api/ledger/entries?after=abc"), status: 400, shape: .openAI),
        Case(name: "ledger limit overflowing", raw: get("/api/ledger/entries?limit=99999999999999999999"), status: 400, shape: .openAI),
        Case(name: "ledger after a negative", raw: get("/api/ledger/entries?after=-1"), status: 400, shape: .openAI),
        // Ollama routes
        Case(name: "Ollama chat body is not JSON", raw: post("/api/chat", "{"), status: 400, shape: .ollama),
        Case(name: "Ollama messages is a string", raw: post("/api/chat", #"{"model":"\#(model)","messages":"x"}"#), status: 400, shape: .ollama),
        Case(
            name: "Ollama content is a number",
            raw: post("/api/chat", #"{"model":"\#(model)","messages":[{"role":"user","content":123}]}"#),
            status: 400,
            shape: .ollama
        ),
        Case(
            name: "Ollama images for a text model",
            raw: post("/api/chat", #"{"model":"\#(model)","messages":[{"role":"user","content":"hi","images":["AAAA"]}]}"#),
            status: 400,
            shape: .ollama
        ),
        Case(
            name: "Ollama tools",
            raw: post("/api/chat", #"{"model":"\#(model)","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}"#),
            status: 400,
            shape: .ollama
        ),
        Case(
            name: "Ollama stream is a string",
            raw: post("/api/chat", #"{"model":"\#(model)","messages":[],"stream":"no"}"#),
            status: 400,
            shape: .ollama
        ),
        Case(
            name: "Ollama generate prompt is a number",
            raw: post("/api/generate", #"{"model":"\#(model)","prompt":1}"#),
            status: 400,
            shape: .ollama
        ),
        Case(
            name: "Ollama load of an unknown model",
            raw: post("/api/generate", #"{"model":"no-such-model:q8_0","prompt":""}"#),
            status: 404,
            shape: .ollama
        ),
        Case(name: "Ollama show of an unknown model", raw: post("/api/show", #"{"model":"no-such-model:q8_0"}"#), status: 404, shape: .ollama),
        Case(name: "Ollama show without a model", raw: post("/api/show", "{}"), status: 400, shape: .ollama),
        // Paths, hosts, origins
        Case(name: "dot-dot segment", raw: get("/v1/models/../../api/nodes"), status: 400, shape: .openAI),
        Case(name: "encoded dot-dot", raw: get("/v1/%2e%2e/api/nodes"), status: 400, shape: .openAI),
        Case(name: "encoded slash", raw: get("/v1%2fmodels"), status: 400, shape: .openAI),
        Case(name: "encoded NUL", raw: get("/v1/mo%00dels"), status: 400, shape: .openAI),
        Case(name: "backslash", raw: get("/v1\\models"), status: 400, shape: .openAI),
        Case(name: "unknown path", raw: get("/etc/passwd"), status: 404, shape: .openAI),
        Case(
            name: "Host of another site (DNS rebinding)",
            raw: "GET /v1/models HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
            status: 403,
            shape: .openAI
        ),
        Case(
            name: "POST from another origin",
            raw: post(chat, chatBody(""), headers: "Origin: https://evil.example\r\n"),
            status: 403,
            shape: .openAI
        ),
        Case(
            name: "preflight from another origin",
            raw:
                "OPTIONS \(chat) HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\nConnection: close\r\n\r\n",
            status: 403,
            shape: .openAI
        ),
        Case(name: "Ollama call from another origin", raw: post("/api/chat", "{}", headers: "Origin: null\r\n"), status: 403, shape: .ollama),
        // HTTP framing
        Case(
            name: "invalid chunked body",
            raw: "POST \(chat) HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            status: 400,
            shape: .openAI
        ),
        Case(
            name: "Content-Length and chunked together (smuggling)",
            raw:
                "POST \(chat) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/keys HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            status: 400,
            shape: .bare
        ),
        Case(
            name: "two Content-Lengths (smuggling)",
            raw: "POST \(chat) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
            status: 400,
            shape: .bare
        ),
        Case(name: "garbage request line", raw: "HELLO THERE\r\n\r\n", status: 400, shape: .bare),
        Case(
            name: "header of 100 KiB",
            raw: get("/v1/models", headers: "X-Big: \(String(repeating: "a", count: 100 << 10))\r\n"),
            status: 400,
            shape: .bare
        ),
        Case(name: "space before the colon", raw: "GET /v1/models HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n", status: 400, shape: .bare),
        Case(name: "header without a value separator", raw: "GET /v1/models HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n", status: 400, shape: .bare),
        Case(name: "headers never finished (slow client)", raw: "GET /v1/models HTTP/1.1\r\nHost: 127", status: 0, shape: .closed),
        Case(
            name: "body cut off before its length",
            raw: "POST \(chat) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{\"model\":",
            status: 0,
            shape: .closed
        ),
    ]

    @Test func everyHostileRequestGetsAClearErrorAndLeavesTheGatewayServing() async throws {
        #expect(Self.cases.count >= 60)
        let configure: (inout GatewayConfiguration) -> Void = {
            $0.rateLimitPerMinute = 100_000
            // Short, for the slow-client rows; long enough that a loaded machine still sends a whole head in time.
            $0.headerTimeout = .seconds(5)
            $0.idleTimeout = .seconds(5)
        }
        let fakeNode: [NodeID: FakeNodeTransport.Behaviour] = [nodeA: .respond(status: 200, contentType: "application/json", chunks: ["{}"])]
        var table: [String] = ["| # | request | expected | answered | envelope | result |", "| --- | --- | --- | --- | --- | --- |"]
        var failures: [String] = []
        try await withLiveGateway(fakeNode, configure: configure) { gateway, port in
            announce(gateway, announcement(nodeA))
            for (index, item) in Self.cases.enumerated() {
                let before = try await gateway.database.recentUsage(limit: 10_000).count
                // A request that should be answered but met a bare close lost the race against the 5 s header timeout
                // (this process stalled past it on a loaded machine: seen once in a full run beside stress-ng); it is
                // sent again, twice at most. A gateway that closes on the input itself closes every time.
                var (text, closed) = ("", true)
                for _ in 0..<3 where text.isEmpty && closed {
                    let connection = try await RawConnection.connect(port: port, sending: item.raw)
                    (text, closed) = await connection.readUntilClosed(timeout: .seconds(30))
                    connection.close()
                    if item.shape == .closed { break }
                }
                var problems = Self.check(item, answer: text, closed: closed)
                await gateway.settled()
                let after = try await gateway.database.recentUsage(limit: 10_000).count
                if after - before != (item.recorded ? 1 : 0) { problems.append("stored \(after - before) usage rows") }
                // The gateway still serves a normal request (a probe that connects, then loses the race against the
                // header timeout on a machine this loaded, is sent again on a new connection).
                var served = ""
                for _ in 0..<3 where !served.hasPrefix("HTTP/1.1") {
                    let probe = try await RawConnection.connect(port: port, sending: Self.get("/v1/models"))
                    served = await probe.readUntilClosed(timeout: .seconds(30)).text
                }
                if !served.hasPrefix("HTTP/1.1 200") || !served.contains(testModel.rawValue) { problems.append("the next request was not served") }
                let answered = Self.status(of: text).map(String.init) ?? (closed ? "closed" : "nothing")
                table.append(
                    "| \(index + 1) | \(item.name) | \(item.status == 0 ? "closed" : String(item.status)) | \(answered) | \(item.shape.rawValue) | \(problems.isEmpty ? "ok" : problems.joined(separator: "; ")) |"
                )
                if !problems.isEmpty { failures.append("\(item.name): \(problems.joined(separator: "; "))") }
            }
            // Many at once: the gateway answers all of them and keeps serving.
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for item in Self.cases.prefix(30) {
                    group.addTask {
                        let connection = try await RawConnection.connect(port: port, sending: item.raw)
                        let (text, closed) = await connection.readUntilClosed(timeout: .seconds(30))
                        return Self.check(item, answer: text, closed: closed).isEmpty
                    }
                }
                var answered = 0
                for try await ok in group where ok { answered += 1 }
                table.append(
                    "| \(Self.cases.count + 1) | the first 30 rows at once | as above | \(answered)/30 as above | | \(answered == 30 ? "ok" : "failed") |"
                )
                if answered != 30 { failures.append("concurrent: \(answered)/30") }
            }
        }
        print("== the bad-input table\n" + table.joined(separator: "\n"))
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }

    static func status(of answer: String) -> Int? {
        guard answer.hasPrefix("HTTP/1.1 ") else { return nil }
        return Int(answer.dropFirst(9).prefix(3))
    }

    /// What is wrong with `answer` for `item`; empty when it is as expected.
    static func check(_ item: Case, answer: String, closed: Bool) -> [String] {
        if item.shape == .closed {
            return closed && status(of: answer) == nil ? [] : ["expected the connection closed without an answer"]
        }
        guard let status = status(of: answer) else { return ["no HTTP answer (closed: \(closed))"] }
        var problems: [String] = []
        if status != item.status { problems.append("status \(status)") }
        let body = answer.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        let error = (try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)))?["error"]
        switch item.shape {
        case .openAI:
            if error?["message"]?.stringValue?.isEmpty != false { problems.append("no message in an OpenAI envelope") }
            if error?["type"]?.stringValue == nil { problems.append("no type") }
            if case .object(let fields)? = error, fields["param"] == nil || fields["code"] == nil { problems.append("param or code missing") }
        case .ollama:
            if error?.stringValue?.isEmpty != false { problems.append("not Ollama's {\"error\": \"…\"}") }
        case .bare, .closed:
            break
        }
        if body.contains("internal_error") { problems.append("answered as an internal error") }
        // One request, one answer: a smuggled second request must not be served.
        if answer.components(separatedBy: "HTTP/1.1 ").count > 2 { problems.append("more than one answer") }
        return problems
    }
}
