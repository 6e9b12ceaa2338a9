import Foundation
import HTTPTypes
import HearthTesting
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthNode

/// The node's look at an owner's server (`BackendMonitorService`), against a small server of the test's own over
/// loopback, whose `/v1/models` and `/props` answers the test changes between looks.
struct BackendMonitorTests {
    /// What the test's server answers to `GET /v1/models` (a fake of the owner's server: a list, or a failure).
    enum Answer: Sendable {
        case lists([String])
        case fails(HTTPResponse.Status)
    }

    /// What it answers to `GET /props` (llama-server's: the file it loaded).
    enum Props: Sendable {
        case names(String)
        case refuses(HTTPResponse.Status)
    }

    /// The answers the server gives now, set by the test.
    final class Script: Sendable {
        let answer: Mutex<Answer>
        let props: Mutex<Props>
        init(_ answer: Answer, props: Props = .refuses(.notFound)) {
            self.answer = Mutex(answer)
            self.props = Mutex(props)
        }
        func set(_ answer: Answer) { self.answer.withLock { $0 = answer } }
        func set(_ props: Props) { self.props.withLock { $0 = props } }
    }

    static func router(_ script: Script) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/v1/models") { _, _ -> Response in
            switch script.answer.withLock({ $0 }) {
            case .lists(let names):
                let data = names.map { #"{"id":"\#($0)","object":"model"}"# }.joined(separator: ",")
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: #"{"object":"list","data":[\#(data)]}"#)))
            case .fails(let status):
                return Response(status: status, body: .init(byteBuffer: ByteBuffer(string: "busy")))
            }
        }
        router.get("/props") { _, _ -> Response in
            switch script.props.withLock({ $0 }) {
            case .names(let path):
                let body = JSONValue.object(["model_path": .string(path)]).serialized()
                return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: body)))
            case .refuses(let status):
                return Response(status: status, body: .init(byteBuffer: ByteBuffer(string: "busy")))
            }
        }
        return router
    }

    /// One look that the server answered. On a loaded machine a look can go unanswered within its 10 s, which counts
    /// as a miss (the steps below test what a miss does); the steps that need an answer look again, each time from no
    /// misses, so that a slow answer fails nothing.
    static func answeredLook(_ monitor: BackendMonitorService) async {
        for _ in 0..<12 where await monitor.check(missesBefore: 0) == 0 { return }
        Issue.record("the server answered none of 12 looks")
    }

    @Test func aModelStaysOfferedThroughOneUnansweredLookAndIsFailedAtTheSecond() async throws {
        let script = Script(.lists(["my-model"]))
        // The server runs on loops of its own: NIO's shared ones carry the rest of the suite's servers.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await looks(script, on: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    func looks(_ script: Script, on group: MultiThreadedEventLoopGroup) async throws {
        try await LoopbackServer.with(router: Self.router(script), name: "owners-server", eventLoopGroup: group) { port in
            let baseURL = "http://127.0.0.1:\(port)/v1"
            let engine = EngineHandle(
                spec: ModelSpec(id: DefaultModel.id, path: "", sha256: DefaultModel.sha256, memoryBytes: 1),
                backend: BackendModel(baseURL: baseURL, name: "my-model", apiKey: nil)
            )
            var settings = BackendSettings(baseURL: baseURL, models: [])
            settings.checkInterval = .seconds(15)
            let monitor = BackendMonitorService(settings: settings, engines: [engine], logger: Logger(label: "test"))
            #expect(monitor.lookAgainAfterMiss == .seconds(3), "a miss is looked at again sooner than the next regular look")

            await Self.answeredLook(monitor)
            #expect(engine.snapshot.state == .ready)

            // One unanswered look: still offered. The second in a row: failed, and said so.
            script.set(.fails(.serviceUnavailable))
            #expect(await monitor.check(missesBefore: 0) == 1)
            #expect(engine.snapshot.state == .ready)
            #expect(await monitor.check(missesBefore: 1) == 2)
            #expect(engine.snapshot.state == .failed)
            #expect(engine.snapshot.detail == "the owner's server does not answer")

            // Back: ready at the first answer.
            script.set(.lists(["my-model"]))
            await Self.answeredLook(monitor)
            #expect(engine.snapshot.state == .ready)

            // A definite answer counts at once: a server that no longer lists the model has it failed at the first look.
            script.set(.lists(["another-model"]))
            await Self.answeredLook(monitor)
            #expect(engine.snapshot.state == .failed)
            #expect(engine.snapshot.detail?.contains("lists no model 'my-model'") == true, "\(engine.snapshot.detail ?? "")")
        }
    }

    /// The file behind a model is checked at every look; a look whose question about it went unanswered (a 5xx, no
    /// answer in time) leaves the model's report as it was, and only the second in a row marks it unverified (which
    /// takes it off the gateway's routes). An answer that offers no way to check counts at once.
    @Test func aVerifiedModelStaysVerifiedThroughOneUnansweredQuestionAboutItsFile() async throws {
        let directory = try TestEnvironment.temporaryDirectory("owners-model")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/owners-model.gguf"
        try Data("the owner's model".utf8).write(to: URL(fileURLWithPath: file))
        let pinned = try FileDigest.sha256Blocking(path: file)
        let script = Script(.lists(["my-model"]), props: .names(file))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await LoopbackServer.with(router: Self.router(script), name: "owners-server", eventLoopGroup: group) { port in
                let baseURL = "http://127.0.0.1:\(port)/v1"
                let engine = EngineHandle(
                    spec: ModelSpec(id: DefaultModel.id, path: "", sha256: pinned, memoryBytes: 1),
                    backend: BackendModel(baseURL: baseURL, name: "my-model", apiKey: nil)
                )
                let settings = BackendSettings(baseURL: baseURL, models: [])
                var monitor = BackendMonitorService(settings: settings, engines: [engine], logger: Logger(label: "test"))
                // Only the test's 5xx is unanswered here: a loaded machine must not make a look miss by its deadline.
                monitor.lookTimeout = .seconds(120)
                func verified() -> Bool? { engine.snapshot.backend?.verified }

                await Self.answeredLook(monitor)
                #expect(engine.snapshot.state == .ready)
                #expect(verified() == true, "\(engine.snapshot)")

                script.set(.refuses(.serviceUnavailable))
                await Self.answeredLook(monitor)
                #expect(verified() == true, "one unanswered question about the file took the model's verification away")
                await Self.answeredLook(monitor)
                #expect(engine.snapshot.state == .ready)
                #expect(verified() == false)
                #expect(engine.snapshot.backend?.evidence.contains("unanswered") == true, "\(engine.snapshot)")

                // Answered again: verified at once, and the count starts over.
                script.set(.names(file))
                await Self.answeredLook(monitor)
                #expect(verified() == true)
                script.set(.refuses(.internalServerError))
                await Self.answeredLook(monitor)
                #expect(verified() == true, "the misses before the answer still counted")

                // A server that answers it has no such route gives no way to check: unverified at the first look.
                script.set(.refuses(.notFound))
                await Self.answeredLook(monitor)
                #expect(verified() == false)
                #expect(engine.snapshot.backend?.evidence.contains("no way to check") == true, "\(engine.snapshot)")
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    /// A server that stopped refuses the node's connections: each look misses at once, not at its deadline after trying
    /// to connect again and again (AsyncHTTPClient's default), and the report says why. The looks here may take five
    /// minutes each: a client that tried again until then runs into the test's time limit.
    @Test(.timeLimit(.minutes(1)))
    func aServerThatRefusesConnectionsMissesItsLooksAndIsSaidToRefuseThem() async throws {
        let baseURL = "http://127.0.0.1:\(try TestEnvironment.freePort())/v1"
        let engine = EngineHandle(
            spec: ModelSpec(id: DefaultModel.id, path: "", sha256: DefaultModel.sha256, memoryBytes: 1),
            backend: BackendModel(baseURL: baseURL, name: "my-model", apiKey: nil)
        )
        engine.update { $0.state = .ready }
        var monitor = BackendMonitorService(settings: BackendSettings(baseURL: baseURL, models: []), engines: [engine], logger: Logger(label: "test"))
        monitor.lookTimeout = .seconds(300)
        #expect(await monitor.check(missesBefore: 0) == 1)
        #expect(engine.snapshot.state == .ready)
        #expect(await monitor.check(missesBefore: 1) == 2)
        #expect(engine.snapshot.state == .failed)
        #expect(engine.snapshot.detail == "the owner's server does not answer: it refuses connections")
    }
}
