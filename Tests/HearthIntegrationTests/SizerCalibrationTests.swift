import AsyncHTTPClient
import Foundation
import HearthTesting
import NIOCore
import NIOHTTP1
import Testing

@testable import HearthCore
@testable import HearthNode

/// The sizer's estimate against a real llama-server's resident memory, with SmolLM2 at two context sizes.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct SizerCalibrationTests {
    @Test(arguments: [1024, 4096])
    func theEstimateIsWithinFifteenPercentOfMeasuredMemory(context: Int) async throws {
        let model = try TestEnvironment.defaultModel()
        let header = try await GGUFSource.header(atPath: model)
        let shape = try #require(ModelShape(header: header))
        let size = try #require(try FileManager.default.attributesOfItem(atPath: model)[.size] as? NSNumber).uint64Value
        let slots = 2
        let estimate = ModelSizer.estimate(weightsBytes: size - header.dataOffset, shape: shape, context: context, parallel: slots)

        let directory = try TestEnvironment.temporaryDirectory("sizer")
        // A port the kernel has just handed out: a random one collided once with another test's, and the engine
        // that could not bind it was polled until the time limit.
        let port = try TestEnvironment.freePort()
        // The arguments a node gives its engine: --ctx-size is the context of all slots together.
        let engine = try await TestProcess(
            name: "llama-server-\(context)",
            executable: try TestEnvironment.llamaServer(),
            arguments: [
                "--model", model, "--host", "127.0.0.1", "--port", String(port), "--ctx-size", String(context * slots),
                "--parallel", String(slots), "--threads", "1", "--no-webui",
            ],
            directory: directory
        )
        var healthy = false
        for _ in 0..<300 where !healthy && processIsAlive(engine.pid) {
            // A short timeout: the client retries a refused connection until the deadline.
            let request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/health")
            healthy = (try? await HTTPClient.shared.execute(request, timeout: .seconds(1)))?.status == .ok
            if !healthy { try await Task.sleep(for: .milliseconds(100)) }
        }
        // VmRSS (`HearthTesting`); 0 when the process could not be read.
        let measured = UInt64(residentBytes(of: engine.pid))
        engine.send(SIGKILL)
        _ = await engine.waitForExit()
        try #require(healthy, "llama-server did not start: \(engine.errorOutput.suffix(500))")
        let resident = measured
        try #require(resident > 0, "llama-server's resident memory could not be read")
        let error = (Double(estimate.totalBytes) - Double(resident)) / Double(resident)
        print(
            "sizer: context \(context) × \(slots): estimate \(estimate.totalBytes.binaryBytes), measured \(resident.binaryBytes), error \(String(format: "%+.1f", error * 100)) %"
        )
        #expect(abs(error) < 0.15, "estimate \(estimate.totalBytes) against \(resident) resident bytes")
    }
}
