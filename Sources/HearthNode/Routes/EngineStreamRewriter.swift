import Foundation
import HearthCore
import HearthMesh
import NIOCore
import NIOFoundationEssentialsCompat

/// Rewrites an engine's stream on its way to the gateway, event by event: each event with generated text gets its
/// `TokenMark` line, log-probabilities the node asked for (to learn the token ids) are removed again, and a
/// continuation's events take the client's stream `id` and `created` (and, when a chat was continued through the
/// text-completion endpoint, the shape of chat chunks).
struct EngineStreamRewriter: Sendable {
    /// What the stream's events must look like to the gateway.
    struct Shape: Sendable {
        /// The client gets chat chunks (`/v1/chat/completions`), not text-completion ones.
        var chat: Bool
        /// The client asked for log-probabilities itself: they stay.
        var keepLogprobs: Bool
        /// A continuation: the stream's `id` and `created`, and whether text-completion events become chat chunks.
        var continuation: (id: String, created: Int64, asChat: Bool)? = nil
        /// The `model` every event names (the catalog id, where the owner's own server names it its way).
        var model: String? = nil
    }

    let shape: Shape
    /// Events are edited in place where they can be (`spliced`); `false` parses every one (tests compare the two).
    var editsInPlace = true
    private var splitter = SSEEventSplitter()
    private var marker = TokenMarker()
    /// The engine answered the stream's request whole (`application/json`): its bytes, kept to be made into the
    /// stream's events at its end (`WholeAnswerStream`).
    private var whole: ByteBuffer?

    /// A whole answer longer than `UsageBounds.largestWholeAnswer`.
    struct WholeAnswerTooLong: Error, CustomStringConvertible {
        var description: String { "a whole answer of more than \(UsageBounds.largestWholeAnswer >> 20) MiB to a stream's request" }
    }

    /// A whole answer that is no completion (not JSON, no `choices`).
    struct WholeAnswerUnreadable: Error, CustomStringConvertible {
        var description: String { "a whole answer to a stream's request that is not a completion" }
    }

    /// What an event may grow by: its mark's line (32 bytes at most) and a `model` longer than the engine's.
    private static let roomForMark = 64

    /// `shape.model` as a JSON string, made once for every event it goes into.
    private let modelJSON: [UInt8]?

    init(shape: Shape) {
        self.shape = shape
        modelJSON = shape.model.map { JSONValue.string($0).serialized() }
    }

    /// From now on the engine's bytes are one whole answer, made into events at the end (`finish`).
    mutating func answeredWhole() {
        whole = ByteBuffer()
    }

    /// The rewritten bytes of every event `chunk` completes (possibly none), each event's also shown to `eachEvent` as
    /// it is written (the receipt's count reads them there rather than splitting the output again).
    /// - Throws: when the engine's event grows past `SSEEventSplitter.maxEventBytes` without ending
    ///   (`SSEEventSplitter.EventTooLarge`), or its whole answer past `UsageBounds.largestWholeAnswer`.
    mutating func rewrite(_ chunk: ByteBuffer, eachEvent: (UnsafeRawBufferPointer) -> Void = { _ in }) throws -> ByteBuffer {
        if var whole {
            guard whole.readableBytes + chunk.readableBytes <= UsageBounds.largestWholeAnswer else { throw WholeAnswerTooLong() }
            self.whole = nil  // One reference while it grows: no copy.
            var chunk = chunk
            whole.writeBuffer(&chunk)
            self.whole = whole
            return ByteBuffer()
        }
        splitter.append(chunk)
        // Made with room for the first event and its mark, rather than grown by each piece written.
        var output: ByteBuffer?
        while let event = try splitter.nextEvent() {
            let room = event.readableBytes + Self.roomForMark
            if output == nil { output = ByteBufferAllocator().buffer(capacity: room) }
            output!.reserveCapacity(output!.writerIndex + room)
            let start = output!.writerIndex - output!.readerIndex
            write(event, to: &output!)
            output!.withUnsafeReadableBytes { eachEvent(UnsafeRawBufferPointer(rebasing: $0[start...])) }
        }
        return output ?? ByteBuffer()
    }

    /// The end of the stream: an unterminated last event, as it came; or a whole answer's events and `[DONE]`.
    /// - Throws: `WholeAnswerUnreadable` when the engine answered whole with no completion.
    mutating func finish() throws -> ByteBuffer {
        guard let whole else { return splitter.remainder() ?? ByteBuffer() }
        self.whole = nil
        guard let answer = try? JSONValue.parse(whole.readableBytesView), let events = WholeAnswerStream.events(of: answer) else {
            throw WholeAnswerUnreadable()
        }
        var output = ByteBuffer()
        for event in events {
            var bytes = ByteBuffer(string: "data: ")
            bytes.writeBytes(event.serialized())
            bytes.writeString("\n\n")
            write(bytes, to: &output)
        }
        output.writeString("data: [DONE]\n\n")
        return output
    }

    private mutating func write(_ event: ByteBuffer, to output: inout ByteBuffer) {
        // Most events are edited in place, their data read where it lies: only the few members that change are
        // touched (see `spliced`).
        if editsInPlace, shape.continuation?.asChat != true {
            let edited = event.withUnsafeReadableBytes { bytes in
                SSEFraming.withPayload(of: bytes) { payload -> Bool in
                    guard let (mark, edits) = spliced(payload) else { return false }
                    if let mark { output.writeMark(mark) }
                    output.writeStaticString("data: ")
                    JSONOutline.splice(payload, edits) { output.writeBytes($0) }
                    output.writeStaticString("\n\n")
                    return true
                }
            }
            if edited == true { return }
        }
        guard let payload = SSEFraming.payloadBytes(of: event.readableBytesView) else {
            var event = event
            output.writeBuffer(&event)
            return
        }
        guard var chunk = try? JSONValue.parse(payload), case .object = chunk else {
            var event = event
            output.writeBuffer(&event)
            return
        }
        var mark: TokenMark?
        if var choices = chunk["choices"]?.arrayValue, !choices.isEmpty {
            for index in choices.indices {
                let text = choices[index]["delta"]?["content"]?.stringValue ?? choices[index]["text"]?.stringValue ?? ""
                if index == 0 { mark = marker.mark(text: Array(text.utf8), token: Self.sampledToken(choices[index])) }
                if !shape.keepLogprobs { choices[index]["logprobs"] = shape.chat ? nil : .null }
                if shape.continuation?.asChat == true { choices[index] = Self.chatChoice(from: choices[index], text: text) }
            }
            chunk["choices"] = .array(choices)
        }
        if let model = shape.model, chunk["model"] != nil { chunk["model"] = .string(model) }
        if let continuation = shape.continuation {
            chunk["id"] = .string(continuation.id)
            chunk["created"] = .integer(continuation.created)
            if continuation.asChat { chunk["object"] = "chat.completion.chunk" }
        }
        if let mark { output.writeMark(mark) }
        output.writeString("data: ")
        output.writeBytes(chunk.serialized(sortedKeys: true))
        output.writeString("\n\n")
    }

    /// The event as `write` would make it by parsing it, made by splicing its bytes instead: the first choice's text
    /// and token read for its mark, log-probabilities removed from every choice (`null` in text completions, as the
    /// engine writes them there), `model`, `id` and `created` replaced. The engine's member order and spacing stay.
    /// `nil` when the event is not JSON as expected (no object, a choice that is no object, a continuation's `id` or
    /// `created` missing): `write` then takes the parsing path.
    private mutating func spliced(_ bytes: UnsafeBufferPointer<UInt8>) -> (TokenMark?, [(range: Range<Int>, with: [UInt8])])? {
        guard let event = JSONOutline(object: bytes), event.isWhole(of: bytes) else { return nil }
        var edits: [(range: Range<Int>, with: [UInt8])] = []
        edits.reserveCapacity(4)
        // The marker moves on only once the event is known to be spliced: a `nil` below sends it to the parsing path,
        // which marks it then.
        var marked: (text: [UInt8], token: (id: Int32, bytes: [UInt8])?)?
        if let choices = event.member("choices", in: bytes), bytes[choices.value.lowerBound] == UInt8(ascii: "[") {
            guard let elements = JSONOutline.elements(ofArray: choices.value, in: bytes) else { return nil }
            for (index, element) in elements.enumerated() {
                guard let choice = JSONOutline(object: bytes, at: element.lowerBound) else { return nil }
                let logprobs = choice.index(of: "logprobs", in: bytes)
                if index == 0 {
                    let text = CompletionChunk.text(ofChoice: choice, in: bytes) ?? ""
                    let token = logprobs.flatMap { Self.sampledToken(inLogprobs: choice.members[$0].value, of: bytes) }
                    marked = (Array(text.utf8), token)
                }
                guard !shape.keepLogprobs else { continue }
                if shape.chat {
                    if let logprobs { edits.append((choice.removal(of: logprobs), [])) }
                } else if let logprobs {
                    edits.append((choice.members[logprobs].value, Array("null".utf8)))
                } else {
                    let end = choice.range.upperBound - 1
                    edits.append((end..<end, Array((choice.members.isEmpty ? #""logprobs":null"# : #","logprobs":null"#).utf8)))
                }
            }
        }
        if let modelJSON, let member = event.member("model", in: bytes) {
            edits.append((member.value, modelJSON))
        }
        if let continuation = shape.continuation {
            guard let id = event.member("id", in: bytes), let created = event.member("created", in: bytes) else { return nil }
            edits.append((id.value, JSONValue.string(continuation.id).serialized()))
            edits.append((created.value, Array(String(continuation.created).utf8)))
        }
        let mark = marked.flatMap { marker.mark(text: $0.text, token: $0.token) }
        // In the bytes' order (`model` comes before `choices` in an engine's events), so that splicing need not sort.
        edits.sort { $0.range.lowerBound < $1.range.lowerBound }
        return (mark, edits)
    }

    /// The token sampled for a choice, from its log-probabilities (`logprobs.content[0]`: `id` and `bytes`).
    static func sampledToken(_ choice: JSONValue) -> (id: Int32, bytes: [UInt8])? {
        guard let entry = choice["logprobs"]?["content"]?[0], let id = entry["id"]?.integerValue,
            let values = entry["bytes"]?.arrayValue, id >= 0, id <= Int64(Int32.max)
        else { return nil }
        var bytes: [UInt8] = []
        for value in values {
            guard let byte = value.integerValue, byte >= 0, byte <= 255 else { return nil }
            bytes.append(UInt8(byte))
        }
        return (Int32(id), bytes)
    }

    /// `sampledToken` of a choice whose `logprobs` value lies at `range`, read off its outline: only the sampled
    /// entry's `id` and `bytes` are parsed, not the alternatives beside them (parsing the whole value was a third of the
    /// rewriter's time on a managed engine's stream). A value laid out otherwise is parsed whole.
    static func sampledToken(inLogprobs range: Range<Int>, of bytes: UnsafeBufferPointer<UInt8>) -> (id: Int32, bytes: [UInt8])? {
        func integer(_ range: Range<Int>) -> Int64? { (try? JSONValue.parse(bytes[range]))?.integerValue }
        guard let logprobs = JSONOutline(object: bytes, at: range.lowerBound), let content = logprobs.member("content", in: bytes),
            let first = JSONOutline.elements(ofArray: content.value, in: bytes)?.first,
            let entry = JSONOutline(object: bytes, at: first.lowerBound), let list = entry.member("bytes", in: bytes),
            let elements = JSONOutline.elements(ofArray: list.value, in: bytes)
        else {
            return (try? JSONValue.parse(bytes[range])).flatMap { sampledToken(["logprobs": $0]) }
        }
        guard let id = entry.member("id", in: bytes).flatMap({ integer($0.value) }), id >= 0, id <= Int64(Int32.max) else { return nil }
        var tokenBytes: [UInt8] = []
        tokenBytes.reserveCapacity(elements.count)
        for element in elements {
            guard let byte = integer(element), byte >= 0, byte <= 255 else { return nil }
            tokenBytes.append(UInt8(byte))
        }
        return (Int32(id), tokenBytes)
    }

    /// A text-completion choice as a chat chunk's choice: its text becomes the delta's content.
    static func chatChoice(from choice: JSONValue, text: String) -> JSONValue {
        var converted: JSONValue = [
            "index": choice["index"] ?? .integer(0),
            "delta": text.isEmpty ? [:] : ["content": .string(text)],
            "finish_reason": choice["finish_reason"] ?? .null,
        ]
        if let logprobs = choice["logprobs"] { converted["logprobs"] = logprobs }
        return converted
    }
}

extension ByteBuffer {
    /// `mark.line`, written piece by piece: made as a `String` first, the line was four allocations an event.
    mutating func writeMark(_ mark: TokenMark) {
        writeString(LinkProtocol.tokenMarkPrefix)
        if let token = mark.token { writeString(String(token)) } else { writeStaticString("-") }
        writeStaticString(" ")
        writeString(mark.kind.rawValue)
        writeStaticString("\n")
    }
}
