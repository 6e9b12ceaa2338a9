import Crypto
import Foundation
import HearthTesting
import NIOHTTP1
import Testing

@testable import HearthCore

/// Receipts end to end: the node signs one per request and sends it as an HTTP/2 trailer; the gateway checks it,
/// countersigns it and appends it to the hash-chained ledger with the usage row.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct ReceiptFlowTests {
    @Test func everyServedRequestLandsInTheLedgerOnceWithAValidChain() async throws {
        try await Cluster.with(label: "receipts") { cluster in
            let node = try await cluster.startNode("node-a")
            try await cluster.waitForReadyNodes(1)
            let nodeID = try #require(node.output.first { $0.hasPrefix("READY node=") }?.dropFirst("READY node=".count))
            let gatewayID = try #require(cluster.join.split(separator: "#").last.flatMap { NodeID(String($0)) })

            let chat: JSONValue = [
                "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Count to five."]], "max_tokens": 12,
            ]
            var streamed = chat
            streamed["stream"] = true
            var replies: [HTTP.Reply] = []
            replies.append(try await HTTP.post(cluster.url + "/v1/chat/completions", json: chat))
            replies.append(try await HTTP.post(cluster.url + "/v1/chat/completions", json: streamed))
            replies.append(
                try await HTTP.post(
                    cluster.url + "/api/chat",
                    json: [
                        "model": .string(DefaultModel.id.rawValue), "messages": [["role": "user", "content": "Hi"]], "options": ["num_predict": 6],
                    ]
                )
            )
            #expect(replies.allSatisfy { $0.status == 200 })
            let requestIDs = replies.compactMap { $0.headers.first(name: "x-request-id") }

            // The usage row is written after the last byte; give the gateway a moment.
            var entries: [JSONValue] = []
            for _ in 0..<50 where entries.count < 3 {
                try await Task.sleep(for: .milliseconds(100))
                entries = try await HTTP.get(cluster.url + "/api/ledger/entries").json["data"]?.arrayValue ?? []
            }
            #expect(entries.count == 3)
            #expect(Set(entries.compactMap { $0["request_id"]?.stringValue }) == Set(requestIDs))

            var previous = Data(count: 32)
            for (index, entry) in entries.enumerated() {
                #expect(entry["seq"]?.integerValue == Int64(index + 1))
                #expect(entry["node"]?.stringValue == String(nodeID))
                #expect(entry["consumer"]?.stringValue == "anonymous")
                let bytes = try #require(entry["entry"]?.stringValue.flatMap { SignedToken.unbase64url($0) })
                // The chain: each entry's hash is the SHA-256 of its bytes, and the next entry commits to it.
                #expect(Hex.encode(SHA256Check.digest(bytes)) == entry["hash"]?.stringValue)
                let countersigned = try COSESign1(decoding: bytes)
                #expect(countersigned.keyID.map { NodeID(publicKey: $0) } == gatewayID)
                #expect(countersigned.isValid(publicKey: Data(countersigned.keyID ?? [])))
                let ledgerEntry = try LedgerEntry(cbor: try CBOR(decoding: countersigned.payload))
                #expect(ledgerEntry.previousHash == previous)
                previous = Data(SHA256Check.digest(bytes))
                // The node's own receipt inside it verifies under the node's key and holds real counts.
                let receipt = try Receipt.verified(try COSESign1(decoding: ledgerEntry.receipt), from: NodeID(String(nodeID))!)
                #expect(receipt.gateway == gatewayID)
                #expect(receipt.modelSHA256 == DefaultModel.sha256)
                #expect(receipt.promptTokens > 0)
                #expect(receipt.completionTokens > 0 && receipt.completionTokens <= receipt.maxTokens)
                #expect(entry["completion_tokens"]?.integerValue == Int64(receipt.completionTokens))
            }

            // Exported, it verifies offline with Hearth's verifier and with an independent one (cbor2 + cryptography).
            let export = cluster.directory + "/ledger.jsonl"
            let exported = try await TestProcess.hearth(["ledger", "export", "--url", cluster.url, "--out", export], in: cluster.directory)
            #expect(exported.status == 0, "\(exported.errors)")
            let verified = try await TestProcess.hearth(["ledger", "verify", export, "--gateway", gatewayID.rawValue], in: cluster.directory)
            #expect(verified.status == 0, "\(verified.errors)")
            #expect(verified.output.first?.hasPrefix("OK entries=3") == true)
            let python = try await PythonClients.interpreter()
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Clients/verify_ledger.py").path
            let independent = try await TestProcess(
                name: "verify-ledger",
                executable: python,
                arguments: [script, export],
                directory: cluster.directory
            )
            #expect(await independent.waitForExit(timeout: .seconds(60)) == 0, "\(independent.errorOutput.suffix(2000))")
            #expect(independent.output.last == "OK")
            #expect(independent.output.first == verified.output.first.map { String($0.dropFirst("OK ".count)) })

            // Tampering with the second entry is caught, and named, by both.
            var lines = try String(contentsOfFile: export, encoding: .utf8).split(separator: "\n").map(String.init)
            var second = try JSONDecoder().decode(JSONValue.self, from: Data(lines[2].utf8))
            var bytes = try #require(second["entry"]?.stringValue.flatMap { SignedToken.unbase64url($0) })
            bytes[bytes.count / 2] ^= 0x01
            second["entry"] = .string(SignedToken.base64url(bytes))
            lines[2] = String(decoding: try JSONEncoder().encode(second), as: UTF8.self)
            let tampered = cluster.directory + "/tampered.jsonl"
            try (lines.joined(separator: "\n") + "\n").write(toFile: tampered, atomically: true, encoding: .utf8)
            let caught = try await TestProcess.hearth(["ledger", "verify", tampered], in: cluster.directory)
            #expect(caught.status != 0)
            #expect(caught.errors.contains("FAILED: entry 2:"), "\(caught.errors)")
            let caughtIndependently = try await TestProcess(
                name: "verify-tampered",
                executable: python,
                arguments: [script, tampered],
                directory: cluster.directory
            )
            #expect(await caughtIndependently.waitForExit(timeout: .seconds(60)) != 0)
            let foreign = try await TestProcess.hearth(["ledger", "verify", export, "--gateway", NodeID.random().rawValue], in: cluster.directory)
            #expect(foreign.status != 0)
        }
    }
}

/// SHA-256 through swift-crypto, for the chain check.
enum SHA256Check {
    static func digest(_ bytes: Data) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
}
