import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import HearthCore
@testable import HearthGateway

/// The gateway's HTTP edge as an attacker probes it: path spellings, credentials, hosts, origins, HEAD.
struct EdgeHardeningTests {
    @Test(arguments: [
        ("/v1/models", "/v1/models"), ("//v1/models", "/v1/models"), ("/v1//models", "/v1/models"),
        ("/v1/models/", "/v1/models"), ("///api///nodes//", "/api/nodes"), ("", "/"), ("/", "/"), ("//", "/"),
        ("/api/keys/hk%41", "/api/keys/hk%41"),
    ])
    func spellingsWithOneReadingAreCanonicalised(raw: String, canonical: String) {
        #expect(CanonicalPath.canonicalize(raw) == .success(canonical))
    }

    @Test(arguments: [
        "/v1/./models", "/v1/../v1/models", "/./v1/models", "/v1/models/..", "/v1%2Fmodels", "/v1%2fmodels", "/v1/%2e/models",
        "/v1/%2E%2E/models", "/v1\\models", "/v1/%5Cmodels", "/v1/models%00", "/v1/mo%0adels", "/v1/models%", "/v1/models%4",
        "/v1/models%zz", "v1/models", "*",
    ])
    func spellingsWithoutOneReadingAreRefused(raw: String) {
        guard case .failure(let failure) = CanonicalPath.canonicalize(raw) else {
            Issue.record("\(raw) was accepted")
            return
        }
        #expect(failure.status == 400)
        #expect(failure.code == "invalid_path")
    }

    /// Every route, in every spelling, with and without credentials, on a `--require-auth` gateway: a spelling the
    /// router would accept answers exactly as the plain path does; the others are refused before any route runs.
    @Test func everyRouteInEverySpellingIsJudgedOnItsCanonicalPath() async throws {
        let (gateway, transport) = try await makeGateway([nodeA: .fail]) {
            $0.requireAuth = true
            $0.rateLimitPerMinute = 100_000
        }
        announce(gateway, announcement(nodeA))
        #expect(gateway.routes.count >= 26)
        try await gateway.application.test(.router) { client in
            let token = try await loginToken(client, IdentityKey.generate())
            for route in gateway.routes {
                let method = HTTPRequest.Method(route.method)!
                let plain = route.path.replacingOccurrences(of: "{id}", with: "hk_0").replacingOccurrences(of: ":id", with: "hk_0")
                let segments = plain.split(separator: "/").map(String.init)
                var merged = ["/" + plain, plain + "/"]
                var refused: [String] = []
                if segments.count > 1 {
                    let rest = segments.dropFirst().joined(separator: "/")
                    merged.append("/\(segments[0])//\(rest)")
                    refused += [
                        "/\(segments[0])/./\(rest)", "/\(segments[0])/x/../\(rest)", "/\(segments[0])%2F\(rest)", "/\(segments[0])/%2e/\(rest)",
                    ]
                }
                for credentials in [HTTPFields(), [.authorization: "Bearer \(token)"]] {
                    let body = method == .post ? ByteBuffer(string: "{}") : nil
                    let expected = try await client.execute(uri: plain, method: method, headers: credentials, body: body) { $0.status }
                    for spelling in merged {
                        try await client.execute(uri: spelling, method: method, headers: credentials, body: body) { response in
                            #expect(response.status == expected, "\(route.method) \(spelling) answered \(response.status), \(plain) \(expected)")
                        }
                    }
                    for spelling in refused {
                        try await client.execute(uri: spelling, method: method, headers: credentials, body: body) { response in
                            #expect(response.status == .badRequest, "\(route.method) \(spelling)")
                            #expect(decode(response.body)["error"]?["code"] == "invalid_path")
                        }
                    }
                    if credentials.isEmpty, AuthMiddleware.needsCaller(plain) {
                        #expect(expected == .unauthorized, "anonymous \(route.method) \(plain) answered \(expected)")
                    }
                }
            }
        }
        // Anonymous calls stopped at 401 and authenticated `{}` bodies at 400: nothing was routed.
        #expect(transport.requests.isEmpty)
    }

    @Test func anEmptyBucketRefusesEverySpellingWithItsHeaders() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.rateLimitPerMinute = 2 }
        try await gateway.application.test(.router) { client in
            for _ in 0..<2 {
                try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
            }
            for spelling in ["//v1/models", "/v1//models", "/v1/models/", "/v1/models"] {
                try await client.execute(uri: spelling, method: .get) { response in
                    #expect(response.status == .tooManyRequests, "\(spelling)")
                    #expect(response.headers[.init("X-RateLimit-Limit")!] == "2")
                    #expect(response.headers[.retryAfter] != nil)
                }
            }
        }
    }

    @Test(arguments: ["bearer", "BEARER", "Bearer", "bEaReR"])
    func aForgedHearthCredentialIsRefusedWhateverTheSchemesCase(scheme: String) async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            for credential in ["ht_forged", "hk_forged"] {
                for header in ["\(scheme) \(credential)", "\(scheme)   \(credential)  ", "  \(scheme)\t\(credential)"] {
                    try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: header]) { response in
                        #expect(response.status == .unauthorized, "\(header)")
                    }
                }
            }
            let token = try await loginToken(client, IdentityKey.generate())
            try await client.execute(uri: "/api/keys", method: .get, headers: [.authorization: "\(scheme) \(token)"]) { response in
                #expect(response.status == .ok)
            }
            // A placeholder key that is no Hearth credential stays anonymous, as OpenAI clients need.
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "\(scheme) unused"]) { response in
                #expect(response.status == .ok)
            }
        }
    }

    @Test func headAnswersAsGetWithoutABody() async throws {
        let (gateway, _) = try await makeGateway([:])
        try await gateway.application.test(.router) { client in
            for path in ["/health", "/v1/models", "/api/tags", "/api/version", "/metrics"] {
                try await client.execute(uri: path, method: .head) { response in
                    #expect(response.status == .ok, "\(path)")
                    #expect(response.body.readableBytes == 0, "\(path)")
                }
            }
        }
    }

    @Test func aLoopbackGatewayAnswersOnlyLoopbackHostsAndTheOnesItAllows() async throws {
        let (gateway, _) = try await makeGateway([:]) { $0.allowedHosts = ["chat.example.org"] }
        try await gateway.application.test(.router) { client in
            for host in ["127.0.0.1:8080", "localhost", "LOCALHOST:8080", "app.localhost", "[::1]:8080", "127.1.2.3", "chat.example.org:443"] {
                try await client.execute(uri: "/v1/models", method: .get, headers: [.init("Host")!: host]) { response in
                    #expect(response.status == .ok, "\(host)")
                }
            }
            for host in ["evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "chat.example.org.evil", "10.0.0.1"] {
                try await client.execute(uri: "/v1/models", method: .get, headers: [.init("Host")!: host]) { response in
                    #expect(response.status == .forbidden, "\(host)")
                    #expect(decode(response.body)["error"]?["code"] == "host_not_allowed")
                }
                try await client.execute(uri: "/api/tags", method: .get, headers: [.init("Host")!: host]) { response in
                    #expect(response.status == .forbidden)
                    #expect(decode(response.body)["error"]?.stringValue?.contains(host) == true, "Ollama routes answer in Ollama's shape")
                }
            }
        }
        let (open, _) = try await makeGateway([:]) { $0.host = "0.0.0.0" }
        try await open.application.test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get, headers: [.init("Host")!: "gateway.lan:8080"]) { response in
                #expect(response.status == .ok)
            }
        }
        // Bound to one LAN address without a list: any name, like a wildcard bind.
        let lan = BrowserPolicy(bindHost: "192.168.1.5", allowedHosts: [], allowedOrigins: [])
        #expect(lan.allowsHost("box.local:8080") && lan.allowsHost("192.168.1.5:8080"))
        // With a list: those names, the bound address and loopback only.
        let listed = BrowserPolicy(bindHost: "192.168.1.5", allowedHosts: ["ai.example.org"], allowedOrigins: [])
        #expect(listed.allowsHost("ai.example.org") && listed.allowsHost("192.168.1.5:8080") && listed.allowsHost("localhost"))
        #expect(!listed.allowsHost("evil.example"))
    }

    /// A `Host` header's name as the policy compares it: lower-cased, trimmed of HTTP's spaces, without its port,
    /// brackets or trailing dot; a port of other than ASCII digits is no port, and other Unicode spaces stay.
    @Test func aHostHeaderIsReadToItsName() {
        let cases: [(String, String)] = [
            ("LOCALHOST:8080", "localhost"), (" \tExample.ORG.\t ", "example.org"), ("[::1]:8080", "::1"), ("[::1]", "::1"),
            ("example.org:", "example.org"), ("127.0.0.1:11434", "127.0.0.1"), ("a:b", "a:b"),
            ("localhost:\u{668}\u{660}", "localhost:\u{668}\u{660}"),
            ("\u{A0}localhost", "\u{A0}localhost"), ("", ""), ("münchen.example:80", "münchen.example"),
        ]
        for (header, name) in cases { #expect(BrowserPolicy.hostName(header) == name, "\(header.debugDescription)") }
        let local = BrowserPolicy(bindHost: "127.0.0.1", allowedHosts: [], allowedOrigins: [])
        #expect(local.allowsHost(" Localhost.:8080 ") && !local.allowsHost("localhost:\u{668}\u{660}") && !local.allowsHost("\u{A0}localhost"))
    }

    @Test func aWebPageOfAnotherOriginCannotUseTheGateway() async throws {
        let answer = #"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#
        let (gateway, transport) = try await makeGateway([nodeA: .respond(status: 200, contentType: "application/json", chunks: [answer])]) {
            $0.allowedOrigins = ["https://chat.example.org", "http://localhost:*"]
        }
        announce(gateway, announcement(nodeA))
        let host: HTTPField.Name = .init("Host")!
        let origin: HTTPField.Name = .init("Origin")!
        try await gateway.application.test(.router) { client in
            for page in ["https://evil.example", "null", "http://127.0.0.1:9999", "https://chat.example.org.evil.example"] {
                for path in ["/v1/chat/completions", "/api/chat"] {
                    try await client.execute(
                        uri: path,
                        method: .post,
                        headers: [host: "127.0.0.1:8080", origin: page, .contentType: "text/plain"],
                        body: try json(chatBody)
                    ) { response in
                        #expect(response.status == .forbidden, "\(page) \(path)")
                        #expect(response.headers[.init("Access-Control-Allow-Origin")!] == nil)
                    }
                }
                try await client.execute(
                    uri: "/v1/chat/completions",
                    method: .options,
                    headers: [host: "127.0.0.1:8080", origin: page, .init("Access-Control-Request-Method")!: "POST"]
                ) { response in
                    #expect(response.status == .forbidden, "preflight from \(page)")
                    #expect(response.headers[.init("Access-Control-Allow-Origin")!] == nil)
                }
            }
            #expect(transport.requests.isEmpty, "no refused page reached a node")

            // The gateway's own pages, and the origins its operator allows, are served with CORS headers.
            for page in ["http://127.0.0.1:8080", "https://chat.example.org", "http://localhost:3000"] {
                try await client.execute(
                    uri: "/v1/models",
                    method: .get,
                    headers: [host: "127.0.0.1:8080", origin: page]
                ) { response in
                    #expect(response.status == .ok, "\(page)")
                    #expect(response.headers[.init("Access-Control-Allow-Origin")!] == page)
                }
            }
            try await client.execute(
                uri: "/v1/chat/completions",
                method: .options,
                headers: [
                    host: "127.0.0.1:8080", origin: "https://chat.example.org", .init("Access-Control-Request-Method")!: "POST",
                    .init("Access-Control-Request-Headers")!: "authorization, content-type",
                ]
            ) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.init("Access-Control-Allow-Origin")!] == "https://chat.example.org")
                #expect(response.headers[.init("Access-Control-Allow-Methods")!]?.contains("POST") == true)
                #expect(response.headers[.init("Access-Control-Allow-Headers")!] == "authorization, content-type")
            }
            // curl and SDKs send no Origin: untouched.
            try await client.execute(uri: "/v1/chat/completions", method: .post, headers: [host: "127.0.0.1:8080"], body: try json(chatBody)) {
                #expect($0.status == .ok)
            }
        }
    }

    @Test func theDataFolderAndDatabaseAreTheOwnersAlone() async throws {
        let directory = try TestEnvironment.temporaryDirectory("private") + "/gateway"
        let (gateway, _) = try await makeGateway([:]) { $0.dataDirectory = directory }
        try await gateway.application.test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
            _ = try await loginToken(client, IdentityKey.generate())
        }
        #expect(try Self.mode(directory) == 0o700)
        for file in try FileManager.default.contentsOfDirectory(atPath: directory) {
            #expect(try Self.mode("\(directory)/\(file)") & 0o077 == 0, "\(file) is readable by others")
        }
        #expect(try Self.mode("\(directory)/gateway.sqlite") == 0o600)
    }

    static func mode(_ path: String) throws -> Int {
        try #require((FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue)
    }
}
