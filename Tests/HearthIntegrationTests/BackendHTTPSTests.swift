import Foundation
import HearthTesting
import Testing

@testable import HearthCore

extension BackendTests {
    /// The owner's llama-server behind TLS (`TLSFront`: real TLS, with a certificate of an authority the test makes, as
    /// an owner's own CA would be): a node told to trust that authority (`--backend-ca-file`) hashes the file over https
    /// and serves the model, streamed and whole; a node not told refuses the certificate, says why in its report, and
    /// is never routed to.
    @Test func anHTTPSServerIsServedWhenItsAuthorityIsTrustedAndRefusedWhenNot() async throws {
        try await Cluster.with(label: "backend-https") { cluster in
            let port = try TestEnvironment.freePort()
            let owners = try await Self.ownersLlamaServer(port: port, directory: cluster.directory)
            defer { Task { [owners] in _ = await owners.stop() } }
            let front = try await TLSFront(to: port)
            defer { front.close() }
            let url = "https://localhost:\(front.port)/v1"

            // Not told of the authority: the system's roots do not vouch for the certificate.
            let stranger = try await cluster.startNode("stranger", serving: Self.backend(url, name: "my-smollm"))
            let distrusted = try await eventually("the model to be reported failed", within: .seconds(30), every: .milliseconds(250)) {
                () -> JSONValue? in
                let model = try await Self.reported(cluster)
                return model?["state"] == "failed" ? model : nil
            }
            #expect(distrusted["detail"]?.stringValue?.contains("certificate is not trusted") == true, "\(distrusted)")
            let refused = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(refused.status == 503, "\(refused.status) \(refused.text.prefix(300))")
            _ = await stranger.stop()
            try await cluster.waitForReadyNodes(0, timeout: .seconds(30))

            // Told: served as an http server would be, its file hashed by the node.
            let authority = (cluster.directory as NSString).appendingPathComponent("owners-ca.pem")
            try front.authorityPEM.write(toFile: authority, atomically: true, encoding: .utf8)
            _ = try await cluster.startNode("owner", serving: Self.backend(url, name: "my-smollm") + ["--backend-ca-file", authority])
            try await cluster.waitForReadyNodes(1)
            let model = try #require(try await Self.reported(cluster))
            #expect(model["backend"]?["verified"] == true && model["backend"]?["routed"] == true, "\(model)")
            let stream = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.streamed(Self.question))
            #expect(stream.status == 200 && !HTTP.streamedText(stream.text).isEmpty, "\(stream.status) \(stream.text.prefix(400))")
            let whole = try await HTTP.post(cluster.url + "/v1/chat/completions", json: Self.question)
            #expect(whole.status == 200 && whole.json["choices"]?[0]?["message"]?["content"]?.stringValue?.isEmpty == false)
        }
    }
}
