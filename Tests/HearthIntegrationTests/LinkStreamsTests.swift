import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore

/// Many streams over one node's link, with a real engine.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct LinkStreamsTests {
    @Test func fiftyConcurrentStreamsShareOneLinkAndCancellingOneFreesOnlyItsSlot() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 64
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        do {
            try await run(client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func run(_ client: HTTPClient) async throws {
        try await Cluster.with(label: "fifty-streams") { cluster in
            let node = try await cluster.startNode("node-a", extraArguments: ["--parallel", "4", "--ctx-size", "1024"])
            try await cluster.waitForReadyNodes(1)
            let engine = try #require(childProcesses(of: node.pid, named: "llama-server").first)
            let enginePort = try #require(commandLineValue(of: engine, flag: "--port"))
            // No host prompt cache beyond what the sizer charged (its default is 8 GiB).
            #expect(commandLineValue(of: engine, flag: "--cache-ram") == "0")

            // One long generation (EOS ignored) that will be cancelled once the others are under way.
            let (started, startedSink) = AsyncStream.makeStream(of: Void.self)
            let long = Task {
                var request = HTTPClientRequest(url: cluster.url + "/v1/completions")
                request.method = .POST
                request.body = .bytes(
                    ByteBuffer(
                        bytes: try JSONEncoder().encode(
                            [
                                "model": .string(DefaultModel.id.rawValue), "prompt": "Once upon a time", "max_tokens": 4000,
                                "ignore_eos": true, "stream": true,
                            ] as JSONValue
                        )
                    )
                )
                let response = try await client.execute(request, timeout: .seconds(120))
                var received = 0
                for try await chunk in response.body {
                    received += chunk.readableBytes
                    if received > 1000 { startedSink.yield() }
                }
            }
            _ = await started.first { _ in true }

            // Forty-nine short streamed chats at once, beside it; the long one is cancelled once they stream.
            // Finished by the first short request that ends, so a run where none streams fails instead of hanging.
            let (shortFlowing, shortFlowingSink) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
            let answers = try await withThrowingTaskGroup(of: (String, JSONValue?).self) { group in
                for index in 0..<49 {
                    group.addTask {
                        let body: JSONValue = [
                            "model": .string(DefaultModel.id.rawValue),
                            "messages": [["role": "user", "content": .string("Say a word about the number \(index).")]],
                            "max_tokens": 12, "temperature": 0, "stream": true, "stream_options": ["include_usage": true],
                        ]
                        var request = HTTPClientRequest(url: cluster.url + "/v1/chat/completions")
                        request.method = .POST
                        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
                        defer { shortFlowingSink.finish() }
                        let response = try await client.execute(request, timeout: .seconds(120))
                        var buffer = ByteBuffer()
                        for try await chunk in response.body {
                            shortFlowingSink.yield()
                            buffer.writeImmutableBuffer(chunk)
                        }
                        let text = String(buffer: buffer)
                        return (text, HTTP.events(text).last?["usage"])
                    }
                }
                _ = await shortFlowing.first { _ in true }
                long.cancel()
                var all: [(String, JSONValue?)] = []
                for try await answer in group { all.append(answer) }
                return all
            }
            #expect(answers.count == 49)
            for (text, usage) in answers {
                #expect(text.hasSuffix("data: [DONE]\n\n"))
                #expect(!HTTP.streamedText(text).isEmpty)
                let completion = usage?["completion_tokens"]?.integerValue ?? 0
                #expect(completion > 0 && completion <= 12)
            }

            // The cancelled generation (4000 tokens) no longer holds a slot once the others are done.
            let deadline = ContinuousClock.now + .seconds(5)
            var processing = true
            while ContinuousClock.now < deadline {
                let slots = try await HTTP.get("http://127.0.0.1:\(enginePort)/slots").json
                processing = slots.arrayValue?.contains { $0["is_processing"] == true } ?? true
                if !processing { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(!processing, "an engine slot kept generating after its client left")
            // All of it went over the node's one link.
            #expect(cluster.gateway.errorOutput.components(separatedBy: "node linked").count == 2)
        }
    }
}
