import Foundation
import HearthCore
import HearthMesh
import Hummingbird
import NIOCore
import NIOFoundationEssentialsCompat

/// Turns a node's OpenAI chat stream into Ollama's lines: one per piece of text, then a final line with counters.
struct OllamaRelay {
    let writer: OllamaResponseWriter
    let started: ContinuousClock.Instant

    struct Outcome {
        /// `ok`, `upstreamError`, or `clientClosed` (the stream is then already cancelled and metered).
        var status: RequestOutcome
        /// The stream, to be finished once the client has the final line.
        var stream: ContinuingStream
        var finalLine: JSONValue
    }

    /// Reads the stream to its end, writing each text line to `writer` as it arrives. When the client goes away, the
    /// node is asked to stop, and its receipt is still read (`ContinuingStream.cancel`).
    func stream(_ stream: ContinuingStream, to writer: inout any ResponseBodyWriter) async -> Outcome {
        await run(stream, streaming: true) { line in try await writer.write(line) }
    }

    /// Reads the stream to its end and gathers the text into the final line (a response that does not stream).
    func collect(_ stream: ContinuingStream) async -> Outcome {
        await run(stream, streaming: false) { _ in }
    }

    private func run(_ opened: ContinuingStream, streaming: Bool, emit: (ByteBuffer) async throws -> Void) async -> Outcome {
        await withTaskExecutorPreference(opened.executor) { await relay(opened, streaming: streaming, emit: emit) }
    }

    private func relay(_ opened: ContinuingStream, streaming: Bool, emit: (ByteBuffer) async throws -> Void) async -> Outcome {
        var stream = opened
        var usage: TokenUsage?
        var finishReason: String?
        var text = ""
        var contentEvents = 0
        var status = RequestOutcome.ok
        var firstToken: ContinuousClock.Instant?
        var toolCalls = OllamaToolCalls.Assembler()
        relay: while true {
            let event: ByteBuffer
            do {
                guard let next = try await stream.next() else { break }
                event = next.event
                if case .usage(let reported, _) = next.kind { usage = reported }
            } catch {
                status = .upstreamError
                break
            }
            guard let payload = SSEFraming.payloadBytes(of: event.readableBytesView), let chunk = CompletionChunk.parse(payload) else { continue }
            if let reason = chunk.choices?.first?.finishReason { finishReason = reason }
            // A call comes in pieces; Ollama's clients get it whole, once the stream is over.
            if ByteSearch.contains(#""tool_calls""#, in: payload), let parsed = try? JSONValue.parse(payload) { toolCalls.add(parsed) }
            guard let piece = chunk.choices?.first?.content, !piece.isEmpty else { continue }
            contentEvents += 1
            if firstToken == nil { firstToken = .now }
            if streaming {
                do {
                    try await emit(OllamaController.ndjson(writer.content(piece)))
                } catch {
                    status = .clientClosed
                    await stream.cancel()
                    break relay
                }
            } else {
                text += piece
            }
        }
        let end = ContinuousClock.now
        let promptEnd = firstToken ?? end
        let statistics = OllamaStatistics(
            doneReason: OllamaResponseWriter.doneReason(fromFinishReason: finishReason),
            promptTokens: usage?.promptTokens ?? 0,
            completionTokens: usage?.completionTokens ?? contentEvents,
            totalNanoseconds: (end - started).nanoseconds,
            promptNanoseconds: (promptEnd - started).nanoseconds,
            evalNanoseconds: (end - promptEnd).nanoseconds
        )
        if streaming, status == .ok, !toolCalls.isEmpty {
            do {
                try await emit(OllamaController.ndjson(writer.toolCalls(toolCalls.ollama)))
            } catch {
                status = .clientClosed
                await stream.cancel()
            }
        }
        let final = writer.final(text: text, statistics: statistics, toolCalls: streaming ? [] : toolCalls.ollama)
        return Outcome(status: status, stream: stream, finalLine: final)
    }
}
