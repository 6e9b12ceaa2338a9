import Foundation
import HearthCore

extension FuzzTarget {
    /// The OpenAI request checker, on both endpoints: an accepted body is forwarded with the limits Hearth enforces,
    /// encodes as JSON, and is accepted again unchanged in meaning (the node and a retry see what the gateway saw).
    static let completion = FuzzTarget(name: "completion", summary: "OpenAI request checker (chat and text completions)") { bytes in
        guard let body = try? JSONValue.parse(bytes) else { return nil }
        for endpoint in [CompletionEndpoint.chat, .text] {
            if let problem = checkForwarded(endpoint: endpoint, body: body) { return problem }
        }
        return nil
    }

    /// Ollama's `/api/chat` and `/api/generate`: a translated body is one the OpenAI checker judges cleanly, and it
    /// streams exactly when Ollama's rules say so.
    static let ollama = FuzzTarget(name: "ollama", summary: "Ollama /api/chat and /api/generate translation") { bytes in
        guard let body = try? JSONValue.parse(bytes) else { return nil }
        let translations = [
            Result(catching: { () throws(APIFailure) -> JSONValue in try OllamaTranslation.chatBody(fromChat: body) }),
            Result(catching: { () throws(APIFailure) -> JSONValue in try OllamaTranslation.chatBody(fromGenerate: body) }),
        ]
        for case .success(let translated) in translations {
            guard let streams = try? OllamaTranslation.wantsStream(body), translated["stream"] == .bool(streams) else {
                return "the translated body streams differently from the Ollama request"
            }
            if let problem = checkForwarded(endpoint: .chat, body: translated) { return problem }
        }
        return nil
    }

    /// Server-sent events: however the bytes are cut into chunks, the events found are the same, they tile the
    /// stream exactly (with the unterminated rest), and each ends at its first blank line.
    static let sse = FuzzTarget(name: "sse", summary: "server-sent event framing (the gateway's stream splitter)") { bytes in
        var input = FuzzInput(bytes)
        let chunkSize = 1 + Int(input.byte() % 32)
        let stream = Array(input.bytes)

        var whole: [Range<Int>] = []
        var start = 0
        while let length = stream[start...].withUnsafeBytes({ SSEFraming.endOfEvent(in: $0) }) {
            whole.append(start..<start + length)
            start += length
        }

        var scanner = SSEFraming.Scanner()
        var chunked: [Range<Int>] = []
        var consumed = 0
        var received = 0
        while received < stream.count {
            received = min(stream.count, received + chunkSize)
            while let length = stream[consumed..<received].withUnsafeBytes({ scanner.nextEvent(in: $0) }) {
                chunked.append(consumed..<consumed + length)
                consumed += length
            }
        }
        guard chunked == whole, consumed == start else { return "chunking changed the events found" }
        for event in whole {
            let bytes = stream[event]
            guard bytes.suffix(2).elementsEqual([0x0A, 0x0A]) || bytes.suffix(3).elementsEqual([0x0A, 0x0D, 0x0A]) else {
                return "an event does not end with a blank line"
            }
            let body = bytes.dropLast(bytes.last == 0x0A && bytes.dropLast().last == 0x0D ? 3 : 2)
            if body.withUnsafeBytes({ SSEFraming.endOfEvent(in: $0) }) != nil { return "an event holds an earlier blank line" }
            if SSEFraming.payloadBytes(of: bytes) != plainPayload(of: bytes) { return "an event's data differs from the format's rule" }
        }
        if SSEFraming.payloadBytes(of: stream[start...]) != plainPayload(of: stream[start...]) {
            return "the rest's data differs from the format's rule"
        }
        return nil
    }

    /// An event's data by the format's rule, written plainly (lines, `data:` prefix, one space, a trailing CR
    /// dropped, joined by newlines): the reference `SSEFraming.payloadBytes`, which walks bytes by hand, must match.
    package static func plainPayload(of event: some Collection<UInt8>) -> [UInt8]? {
        var lines: [[UInt8]] = []
        for line in event.split(separator: 0x0A, omittingEmptySubsequences: true) {
            var line = Array(line)
            if line.last == 0x0D { line.removeLast() }
            guard line.starts(with: Array("data:".utf8)) else { continue }
            line.removeFirst(5)
            if line.first == 0x20 { line.removeFirst() }
            lines.append(line)
        }
        let data = Array(lines.joined(separator: [0x0A]))
        return lines.isEmpty || data.isEmpty ? nil : data
    }

    private static func checkForwarded(endpoint: CompletionEndpoint, body: JSONValue) -> String? {
        let limits = RequestLimits(maxTokensCeiling: 512)
        guard let request = try? CompletionRequest(endpoint: endpoint, body: body, limits: limits) else { return nil }
        guard (1...limits.maxTokensCeiling).contains(request.maxTokens) else { return "max_tokens \(request.maxTokens) escaped the ceiling" }
        guard request.upstreamBody["max_tokens"] == .integer(Int64(request.maxTokens)) else { return "the forwarded max_tokens differs" }
        guard let encoded = try? JSONEncoder().encode(request.upstreamBody),
            let decoded = try? JSONDecoder().decode(JSONValue.self, from: encoded)
        else { return "the forwarded body is not JSON" }
        guard let again = try? CompletionRequest(endpoint: endpoint, body: decoded, limits: limits) else {
            return "the forwarded body is refused when checked again"
        }
        guard again.model == request.model, again.stream == request.stream, again.maxTokens == request.maxTokens else {
            return "checking the forwarded body again changed model, stream or max_tokens"
        }
        return nil
    }
}
