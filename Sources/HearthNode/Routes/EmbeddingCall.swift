import AsyncHTTPClient
import Foundation
import HearthCore
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1
import Synchronization

/// Asks an engine (a managed llama-server, or the owner's own server under its name for the model) for embeddings one
/// input at a time, one request at a time per engine, and puts the answer together in OpenAI's shape.
///
/// llama-server b11434 returns a wrong vector for the first of two embedding sequences that share a batch: with two
/// slots, `["The cat sat on the mat.", "Stock markets fell sharply today.", "The cat sat on the mat."]` gave the first
/// text a vector at cosine 0.71 to the third's and to a one-slot engine's, while every input sent alone, even beside
/// a chat generating in the other slot, matched the one-slot engine exactly. Sequencing costs batching, which on a CPU
/// gains little for short inputs. An owner's server is asked the same way: it may be such a llama-server.
struct EmbeddingCall {
    let address: EngineAddress
    let gate: SerialGate
    /// Called when the engine refused the connection: for an owner's server, the node's monitor looks at once
    /// (`EngineHost.backendLooks`).
    var refused: @Sendable () -> Void = {}

    /// The engine's answer for `body` (a checked OpenAI embeddings body) and its usage.
    func run(body: JSONValue) async throws(APIFailure) -> (answer: JSONValue, usage: TokenUsage) {
        let inputs = Self.inputs(of: body["input"])
        guard !inputs.isEmpty else { throw APIFailure(.invalidRequest, "'input' must not be empty.", param: "input", code: "invalid_value") }
        var data: [JSONValue] = []
        var promptTokens = 0
        await gate.acquire()
        defer { gate.release() }
        for (index, input) in inputs.enumerated() {
            var single = body
            single["input"] = input
            if let name = address.backendName { single["model"] = .string(name) }
            let answer = try await ask(single)
            guard let item = answer["data"]?[0], let vector = item["embedding"] else {
                throw APIFailure(.upstream, "The engine's embeddings answer had no vector.", code: "engine_failed")
            }
            data.append(["index": .integer(Int64(index)), "object": "embedding", "embedding": vector])
            // An answer without usage (an owner's server may leave it out) counts no tokens: the request is
            // receipted, but unmetered.
            promptTokens += TokenUsage.embedding(in: answer)?.promptTokens ?? 0
        }
        let usage = TokenUsage(promptTokens: promptTokens, completionTokens: 0)
        let answer: JSONValue = [
            "object": "list", "model": body["model"] ?? .null, "data": .array(data),
            "usage": ["prompt_tokens": .integer(Int64(promptTokens)), "total_tokens": .integer(Int64(promptTokens))],
        ]
        return (answer, usage)
    }

    /// OpenAI's `input` as a list of single inputs: a string, token ids (one input), or an array of either.
    static func inputs(of input: JSONValue?) -> [JSONValue] {
        switch input {
        case .string?: return [input!]
        case .array(let items)?:
            if items.allSatisfy({ $0.integerValue != nil }) { return items.isEmpty ? [] : [input!] }
            return items
        default: return []
        }
    }

    private func ask(_ body: JSONValue) async throws(APIFailure) -> JSONValue {
        var request = HTTPClientRequest(url: address.url("/v1/embeddings"))
        request.method = .POST
        request.headers = address.clientRequestHeaders
        request.tlsConfiguration = address.trust?.configuration
        do {
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            let response = try await EngineClient.shared.execute(request, deadline: .now() + .minutes(10))
            let bytes = try await response.body.collect(upTo: UsageBounds.largestWholeAnswer)
            guard response.status == .ok else { throw EngineRefusal.failure(status: Int(response.status.code), body: bytes) }
            return try JSONDecoder().decode(JSONValue.self, from: bytes)
        } catch let failure as APIFailure {
            throw failure
        } catch {
            if BackendMonitorService.refusesConnections(error) { refused() }
            throw APIFailure(.upstream, "The engine did not answer: \(error)", code: "engine_failed")
        }
    }
}

/// One holder at a time, first come first served; waiting is not cancelled (a holder never waits on the engine for
/// longer than its request's own deadline).
final class SerialGate: Sendable {
    private let state = Mutex<(busy: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    func acquire() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if !state.busy {
                    state.busy = true
                    return true
                }
                state.waiting.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiting.isEmpty {
                state.busy = false
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume()
    }
}

/// One gate per engine, made on first use.
final class SerialGates: Sendable {
    private let gates = Mutex<[String: SerialGate]>([:])

    func gate(for key: String) -> SerialGate {
        gates.withLock { gates in
            if let gate = gates[key] { return gate }
            let gate = SerialGate()
            gates[key] = gate
            return gate
        }
    }
}
