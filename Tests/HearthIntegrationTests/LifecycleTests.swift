import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

@testable import HearthCore

/// Start-up and shutdown of real processes: `hearth up` as a newcomer runs it, and a node draining on SIGTERM.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct LifecycleTests {
    @Test func hearthUpServesTheDefaultModelAndCtrlCStopsEverything() async throws {
        let directory = try TestEnvironment.temporaryDirectory("up")
        let up = try await TestProcess(
            name: "up",
            executable: try TestEnvironment.hearthBinary(),
            // As a newcomer runs it, but for a patient header timeout (`Cluster.patientHeaderTimeout`): this test
            // process's own client was once left for over 10 s between connecting and sending, early in a full run.
            arguments: ["up", "--port", "0", "--data-dir", directory, "--threads", "1"] + Cluster.patientHeaderTimeout,
            environment: ["HEARTH_LLAMA_SERVER": try TestEnvironment.llamaServer()],
            directory: directory
        )
        let ready = try await up.waitForLine { $0.hasPrefix("READY url=") }
        let url = String(ready.dropFirst("READY url=".count))
        // The printed curl must work as soon as it is printed.
        _ = try await up.waitForLine { $0.contains("curl \(url)/v1/chat/completions") }
        let reply: HTTP.Reply
        do {
            reply = try await HTTP.post(
                url + "/v1/chat/completions",
                json: ["model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Hello!"]], "max_tokens": 8]
            )
        } catch {
            // What `hearth up` said is what explains a connection it closed.
            Issue.record(error, "stderr of hearth up:\n\(up.errorOutput.suffix(4000))")
            return
        }
        #expect(reply.status == 200, "\(reply.text)\nstderr:\n\(up.errorOutput.suffix(3000))")
        #expect(reply.json["choices"]?[0]?["message"]?["content"]?.stringValue?.isEmpty == false)
        #expect(FileManager.default.fileExists(atPath: directory + "/gateway/gateway.sqlite"))

        let engines = childProcesses(of: up.pid, named: "llama-server")
        #expect(engines.count == 1)
        up.send(SIGINT)
        #expect(await up.waitForExit(timeout: .seconds(20)) == 0, "stderr:\n\(up.errorOutput.suffix(3000))")
        #expect(engines.allSatisfy { !processIsAlive($0) }, "an engine outlived hearth up")
    }

    @Test func nodeFinishesAStreamInFlightOnSIGTERMThenExitsCleanly() async throws {
        try await Cluster.with(label: "drain") { cluster in
            let node = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            let engines = childProcesses(of: node.pid, named: "llama-server")
            let body: JSONValue = [
                // Long enough to outlast the old drain bound (8 s) and the old shutdown ceiling (10 s) on this
                // machine: a short stream passed by finishing before any bound was reached, whatever the bound was.
                "model": .string(DefaultModel.id.rawValue), "prompt": "Once upon a time", "max_tokens": 600, "ignore_eos": true,
                "stream": true, "stream_options": ["include_usage": true],
            ]
            var request = HTTPClientRequest(url: cluster.url + "/v1/completions")
            request.method = .POST
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
            #expect(response.status == .ok)
            var text = ""
            var signalled = false
            for try await chunk in response.body {
                text += String(buffer: chunk)
                if !signalled, text.contains("\"text\"") {
                    node.send(SIGTERM)
                    signalled = true
                }
            }
            #expect(signalled)
            #expect(text.hasSuffix("data: [DONE]\n\n"), "the stream in flight must finish, not break off")
            let usage = HTTP.events(text).compactMap { $0["usage"] }.last
            #expect(usage?["completion_tokens"] == 600)
            #expect(await node.waitForExit(timeout: .seconds(20)) == 0)
            #expect(engines.allSatisfy { !processIsAlive($0) })
        }
    }

    /// A whole answer states its length and is sent before its receipt is signed: the node it is in flight on still
    /// drains until the receipt too is written, so the answer arrives whole and the node is credited for it.
    @Test func nodeFinishesAWholeAnswerInFlightWithItsReceiptOnSIGTERM() async throws {
        try await Cluster.with(label: "drain-whole") { cluster in
            let node = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            let body: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": true,
            ]
            let answered = Mutex(false)
            let answering = Task {
                defer { answered.withLock { $0 = true } }
                return try await HTTP.post(cluster.url + "/v1/completions", json: body)
            }
            // Signalled once the engine generates the answer, not before the node has it; an answer that comes first
            // (an error) is reported as it is.
            let generating = try await eventually("the engine to generate the answer", within: .seconds(120)) { () -> Bool? in
                // The node's engine as of now: one restarted on a busy machine listens on another port.
                for engine in childProcesses(of: node.pid, named: "llama-server") {
                    guard let port = commandLineValue(of: engine, flag: "--port") else { continue }
                    let slots = try? await HTTP.get("http://127.0.0.1:\(port)/slots").json
                    if slots?.arrayValue?.contains(where: { $0["is_processing"] == true }) == true { return true }
                }
                return answered.withLock { $0 } ? false : nil
            }
            guard generating else {
                let early = try await answering.value
                Issue.record("the answer came before the engine was seen generating it: HTTP \(early.status) \(early.text.prefix(400))")
                return
            }
            node.send(SIGTERM)
            let reply = try await answering.value
            #expect(reply.status == 200)
            #expect(reply.json["usage"]?["completion_tokens"] == 300, "\(reply.text.prefix(300))")
            let requestID = try #require(reply.headers.first(name: "x-request-id"))
            let entry = try await eventually("the answer's receipt in the ledger", within: .seconds(30)) { () -> JSONValue? in
                let entries = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue ?? []
                return entries.first { $0["request_id"]?.stringValue == requestID }
            }
            #expect(entry["completion_tokens"] == 300)
            #expect(await node.waitForExit(timeout: .seconds(20)) == 0)
        }
    }
}
