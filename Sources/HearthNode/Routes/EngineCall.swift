import AsyncHTTPClient
import Foundation
import HearthCore
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// The request a node sends its engine for one of the gateway's, and how the answer's events must be rewritten.
///
/// A stream asks the engine for the sampled token's log-probability with every event, which is how the node learns the
/// token ids it marks (`TokenMark`); a continuation (`Continuation.field`) becomes a text completion whose prompt is
/// the original prompt followed by what the earlier nodes generated, as tokens (docs/ROUTING.md, "Continuation").
struct EngineCall {
    var path: String
    var body: ByteBuffer
    /// For streams: how their events are rewritten.
    var rewriter: EngineStreamRewriter?
    /// For a continuation: how many prompt tokens were the earlier answer.
    var prefill: Int?
    /// For a whole answer from the owner's own server: the catalog id its `model` must name again.
    var answerModel: ModelID?

    /// A request passed on as it came (a whole answer, not a stream).
    static func unchanged(path: String, body: ByteBuffer) -> EngineCall {
        EngineCall(path: path, body: body)
    }

    /// The call for a streamed request, `body` already decoded.
    /// - Throws: `APIFailure` for a continuation this node cannot make (a malformed one, or one of a request that
    ///   cannot be continued), or when the engine refused to template or tokenize it.
    static func stream(path: String, body: JSONValue, port: Int) async throws(APIFailure) -> EngineCall {
        let chat = path == CompletionEndpoint.chat.rawValue
        var forwarded = body
        forwarded[Continuation.field] = nil
        let keepLogprobs = chat ? body["logprobs"]?.boolValue == true : (body["logprobs"]?.integerValue ?? 0) > 0
        // Ids serve only a continuation: a stream that could never be continued (tools, a response format, several
        // choices) is not asked for them, and llama-server refuses log-probabilities with tools in a stream anyway.
        if !keepLogprobs, Continuation.refusal(for: body, chat: chat) == nil {
            // The sampled token's id comes with its log-probability; one alternative is the least llama-server sends.
            if chat {
                forwarded["logprobs"] = true
                forwarded["top_logprobs"] = 1
            } else {
                forwarded["logprobs"] = 1
            }
            if readsIDsAfterSampling(body) { forwarded["post_sampling_probs"] = true }
        }
        guard let value = body[Continuation.field] else {
            return EngineCall(
                path: path,
                body: encode(forwarded),
                rewriter: EngineStreamRewriter(shape: .init(chat: chat, keepLogprobs: keepLogprobs))
            )
        }
        guard let continuation = ContinuationRequest(value) else {
            throw APIFailure(.invalidRequest, "The continuation is malformed.", param: Continuation.field)
        }
        if let problem = Continuation.refusal(for: body, chat: chat) {
            throw APIFailure(.invalidRequest, "This request cannot be continued: \(problem).", param: Continuation.field, code: "not_continuable")
        }
        var prompt: [JSONValue]
        if chat {
            let templated = try await post("/apply-template", body: forwarded, port: port)
            guard let text = templated["prompt"]?.stringValue else {
                throw APIFailure(.upstream, "The engine did not template the conversation.", code: "engine_failed")
            }
            prompt = [.string(text)]
            for member in ["messages", "tools", "tool_choice", "response_format", "chat_template_kwargs", "top_logprobs"] {
                forwarded[member] = nil
            }
            // A text completion counts its alternatives in `logprobs` itself.
            if keepLogprobs { forwarded["logprobs"] = .integer(max(1, body["top_logprobs"]?.integerValue ?? 1)) }
        } else if case .string(let text)? = body["prompt"] {
            prompt = [.string(text)]
        } else {
            prompt = body["prompt"]?.arrayValue ?? []
        }
        prompt += continuation.generated
        // What the earlier nodes generated counts against max_tokens: the ids one each, text as the engine reads it.
        var prefill = 0
        for piece in continuation.generated {
            guard case .string(let text) = piece else {
                prefill += 1
                continue
            }
            let tokens = try await post("/tokenize", body: ["content": .string(text), "add_special": false, "parse_special": true], port: port)
            prefill += tokens["tokens"]?.arrayValue?.count ?? 0
        }
        // A mixed array of text and ids is one prompt only inside `prompt_string` (a bare array of strings is several).
        forwarded["prompt"] = ["prompt_string": .array(prompt)]
        if let maxTokens = body["max_tokens"]?.integerValue {
            // A cut just before the end leaves nothing to generate; one more token is the least an engine makes.
            forwarded["max_tokens"] = .integer(max(1, maxTokens - Int64(prefill)))
        }
        return EngineCall(
            path: CompletionEndpoint.text.rawValue,
            body: encode(forwarded),
            rewriter: EngineStreamRewriter(
                shape: .init(chat: chat, keepLogprobs: keepLogprobs, continuation: (continuation.id, continuation.created, chat))
            ),
            prefill: prefill
        )
    }

    /// Whether the engine may report a stream's sampled tokens from its sampler's candidates (`post_sampling_probs`)
    /// rather than from the whole vocabulary: only when a request leaves the sampler chain as llama-server builds it,
    /// whose top-k (40 by default, at most 1,000 here) leaves few candidates to sort.
    ///
    /// The id is the same either way. Before sampling, llama-server takes a softmax over every token of the vocabulary
    /// for every token it generates, on the one thread that also drives the batch: with SmolLM2's 49,152 tokens and
    /// eight streams that alone cost the engine about 7 % of its tokens/s (bench/README.md, eighth pass). After
    /// sampling it sorts the candidates instead, which is a sort of the whole vocabulary when nothing bounded them
    /// (top-k turned off or above 1,000, a chain of the client's own, mirostat): those requests keep the first way.
    static func readsIDsAfterSampling(_ body: JSONValue) -> Bool {
        if let samplers = body["samplers"], samplers != .null { return false }
        if let mirostat = body["mirostat"], mirostat != .null, mirostat.doubleValue != 0 { return false }
        guard let topK = body["top_k"], topK != .null else { return true }
        guard let value = topK.integerValue else { return false }
        return (1...1000).contains(value)
    }

    /// The call for the owner's own server (`--backend`): the request under the server's name for the model, without
    /// llama.cpp's own extensions, and the answer named by the catalog id again. Its stream's events carry no token
    /// ids (the OpenAI API has none), so the gateway can continue them elsewhere from their text only.
    /// - Throws: `APIFailure` for a continuation: the server has no token prompt to take one.
    static func backend(path: String, body: JSONValue, name: String, model: ModelID) throws(APIFailure) -> EngineCall {
        guard body[Continuation.field] == nil else {
            throw APIFailure(
                .unavailable,
                "This node serves '\(model)' through its owner's own server, which cannot continue another node's answer.",
                code: "not_continuable"
            )
        }
        var forwarded = body
        forwarded["model"] = .string(name)
        forwarded["timings_per_token"] = nil
        guard body["stream"]?.boolValue == true else {
            return EngineCall(path: path, body: encode(forwarded), answerModel: model)
        }
        let shape = EngineStreamRewriter.Shape(chat: path == CompletionEndpoint.chat.rawValue, keepLogprobs: true, model: model.rawValue)
        return EngineCall(path: path, body: encode(forwarded), rewriter: EngineStreamRewriter(shape: shape))
    }

    /// A whole answer from the owner's server, its `model` named by the catalog id again (unchanged if it is no JSON
    /// object, or names no model).
    ///
    /// Only the name's bytes are replaced: the rest of the answer reaches the client as the owner's server wrote it
    /// (its numbers' spelling, its members' order), and the answer is not parsed and written out again. An answer
    /// with a key written with escapes, or with `model` twice, is parsed instead, so that no spelling of `model` is
    /// left with the server's name.
    static func renamed(_ answer: ByteBuffer, model: ModelID) -> ByteBuffer {
        let plan = answer.readableBytesView.withContiguousStorageIfAvailable { bytes -> Rename in
            guard let outline = JSONOutline(object: bytes), outline.isWhole(of: bytes) else { return .parse }
            let named = outline.members.filter { bytes[$0.key].elementsEqual("model".utf8) }
            guard named.count <= 1, !outline.members.contains(where: { bytes[$0.key].contains(UInt8(ascii: "\\")) }) else { return .parse }
            guard let member = named.first else { return .unchanged }
            return .splice(JSONOutline.splice(bytes, [(member.value, JSONValue.string(model.rawValue).serialized())]))
        }
        switch plan ?? .parse {
        case .splice(let bytes): return ByteBuffer(bytes: bytes)
        case .unchanged: return answer
        case .parse:
            guard var json = try? JSONValue.parse(answer.readableBytesView), case .object = json, json["model"] != nil else { return answer }
            json["model"] = .string(model.rawValue)
            return encode(json)
        }
    }

    /// How `renamed` renames an answer.
    private enum Rename {
        case splice([UInt8])
        case unchanged
        case parse
    }

    private static func encode(_ body: JSONValue) -> ByteBuffer {
        ByteBuffer(bytes: body.serialized())
    }

    /// A short JSON exchange with the engine (templating, tokenizing).
    private static func post(_ path: String, body: JSONValue, port: Int) async throws(APIFailure) -> JSONValue {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .POST
        request.headers.add(name: "content-type", value: "application/json")
        request.headers.add(name: "connection", value: "close")
        do {
            request.body = .bytes(try JSONEncoder().encode(body))
            let response = try await EngineClient.shared.execute(request, deadline: .now() + .seconds(60))
            let answer = try await response.body.collect(upTo: 16 << 20)
            guard response.status == .ok else {
                throw EngineRefusal.failure(status: Int(response.status.code), body: answer)
            }
            return try JSONDecoder().decode(JSONValue.self, from: answer)
        } catch let failure as APIFailure {
            throw failure
        } catch {
            throw APIFailure(.upstream, "The engine did not answer \(path): \(error)", code: "engine_failed")
        }
    }
}
