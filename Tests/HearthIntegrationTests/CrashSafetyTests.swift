import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore
@testable import HearthGateway

/// SIGKILL the gateway while it streams: after a restart the ledger still verifies, every credited receipt has its
/// usage row, nothing is counted twice, and the requests that were cut off are recorded as such.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct CrashSafetyTests {
    @Test func aKilledGatewayLosesNothingItCreditedAndRecordsWhatItCutOff() async throws {
        try await Cluster.with(label: "crash") { cluster in
            _ = try await cluster.startNode("node-a", extraArguments: ["--parallel", "4"])
            try await cluster.waitForReadyNodes(1)
            let short: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Hello"]], "max_tokens": 6,
            ]
            for _ in 0..<2 { #expect(try await HTTP.post(cluster.url + "/v1/chat/completions", json: short).status == 200) }
            // Their usage rows and ledger entries follow the last byte: wait until both are credited (bounded).
            var credited = 0
            for _ in 0..<300 where credited < 2 {
                credited = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue?.count ?? 0
                if credited < 2 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(credited == 2, "the two short requests were not credited before the crash")

            // Three long streams, each read until tokens flow, then the gateway dies under them.
            let long: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": true, "stream": true,
            ]
            let (flowing, flowingSink) = AsyncStream.makeStream(of: Void.self)
            let streams = (0..<3).map { _ in
                Task {
                    var request = HTTPClientRequest(url: cluster.url + "/v1/completions")
                    request.method = .POST
                    request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(long)))
                    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
                    var signalled = false
                    for try await _ in response.body where !signalled {
                        flowingSink.yield()
                        signalled = true
                    }
                }
            }
            var started = 0
            for await _ in flowing {
                started += 1
                if started == 3 { break }
            }
            // A stream's note that it is in flight goes with the next group commit, which nobody waits for: on a busy
            // machine tokens flowed before the notes were written, and a crash then had nothing to record (one
            // `cut_off` of three, in a full run beside a CPU hog). The crash comes once the three are noted.
            let watcher = try GatewayDatabase.open(directory: cluster.directory + "/gateway")
            _ = try await eventually("the three streams noted in flight", within: .seconds(30)) {
                try await watcher.requestsNotedInFlight().count >= 3 ? true : nil
            }
            cluster.gateway.send(SIGKILL)
            _ = await cluster.gateway.waitForExit()
            for stream in streams { _ = await stream.result }

            // A new gateway process on the same data folder.
            let restarted = try await TestProcess(
                name: "gateway-restarted",
                executable: try TestEnvironment.hearthBinary(),
                arguments: ["gateway", "--port", "0", "--mesh-host", "127.0.0.1", "--mesh-port", "0", "--data-dir", cluster.directory + "/gateway"],
                directory: cluster.directory
            )
            let url = String(try await restarted.waitForLine { $0.hasPrefix("READY url=") }.dropFirst("READY url=".count))
            #expect(restarted.errorOutput.contains("recorded its requests as cut off"))

            let export = cluster.directory + "/after-crash.jsonl"
            #expect(try await TestProcess.hearth(["ledger", "export", "--url", url, "--out", export], in: cluster.directory).status == 0)
            let verified = try await TestProcess.hearth(["ledger", "verify", export], in: cluster.directory)
            #expect(verified.status == 0, "\(verified.errors)")
            #expect(verified.output.first?.hasPrefix("OK entries=2") == true, "\(verified.output)")
            _ = await restarted.stop()

            let database = try GatewayDatabase.open(directory: cluster.directory + "/gateway")
            let usage = try await database.recentUsage(limit: 100)
            let ledger = try await database.ledger()
            #expect(Set(usage.map(\.requestID)).count == usage.count, "a request was counted twice")
            #expect(usage.filter { $0.status == "cut_off" }.count == 3, "\(usage.map(\.status))")
            #expect(usage.filter { $0.status == "ok" }.count == 2)
            let usageIDs = Set(usage.map(\.requestID))
            #expect(ledger.allSatisfy { usageIDs.contains($0.requestID) }, "a credited receipt without its usage row")
            #expect(ledger.count == 2)
        }
    }
}
