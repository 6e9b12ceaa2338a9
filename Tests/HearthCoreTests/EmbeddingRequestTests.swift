import Foundation
import Testing

@testable import HearthCore

extension JSONValue {
    fileprivate init(parsing text: String) throws {
        self = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }
}

struct EmbeddingRequestTests {
    @Test(arguments: [
        (#"{"model":"m:q8_0","input":"hello"}"#, 1),
        (#"{"model":"m:q8_0","input":["a","b","c"]}"#, 3),
        (#"{"model":"m:q8_0","input":[1,2,3]}"#, 1),
        (#"{"model":"m:q8_0","input":[[1,2],[3]],"encoding_format":"base64"}"#, 2),
    ])
    func acceptsOpenAIsInputShapes(body: String, inputs: Int) throws {
        let request = try EmbeddingRequest(body: try JSONValue(parsing: body))
        #expect(request.model == ModelID("m:q8_0"))
        #expect(request.inputs == inputs)
        #expect(request.upstreamBody == (try JSONValue(parsing: body)))
    }

    @Test(arguments: [
        (#"[]"#, nil as String?, nil as String?),
        (#"{"input":"x"}"#, "model", "missing_required_parameter"),
        (#"{"model":"","input":"x"}"#, "model", "invalid_type"),
        (#"{"model":"m:q8_0"}"#, "input", "missing_required_parameter"),
        (#"{"model":"m:q8_0","input":""}"#, "input", "invalid_value"),
        (#"{"model":"m:q8_0","input":[]}"#, "input", "invalid_value"),
        (#"{"model":"m:q8_0","input":["a",""]}"#, "input", "invalid_value"),
        (#"{"model":"m:q8_0","input":[[1],[-2]]}"#, "input", "invalid_value"),
        (#"{"model":"m:q8_0","input":[{"a":1}]}"#, "input", "invalid_type"),
        (#"{"model":"m:q8_0","input":7}"#, "input", "invalid_type"),
        (#"{"model":"m:q8_0","input":"x","encoding_format":"int8"}"#, "encoding_format", "invalid_value"),
        (#"{"model":"m:q8_0","input":"x","dimensions":64}"#, "dimensions", "unsupported_parameter"),
    ])
    func refusesBadBodiesNamingTheField(body: String, param: String?, code: String?) throws {
        #expect {
            _ = try EmbeddingRequest(body: try JSONValue(parsing: body))
        } throws: { error in
            guard let failure = error as? APIFailure else { return false }
            return failure.status == 400 && failure.param == param && (code == nil || failure.code == code)
        }
    }

    @Test func refusesMoreInputsThanAVolunteerShouldEmbedAtOnce() throws {
        let many = JSONValue.array(Array(repeating: "x", count: EmbeddingRequest.maxInputs + 1))
        #expect(throws: APIFailure.self) { try EmbeddingRequest(body: ["model": "m:q8_0", "input": many]) }
        let most = JSONValue.array(Array(repeating: "x", count: EmbeddingRequest.maxInputs))
        #expect(try EmbeddingRequest(body: ["model": "m:q8_0", "input": most]).inputs == EmbeddingRequest.maxInputs)
    }

    /// Whether `value` holds these vectors, within float rounding.
    static func vectors(_ value: JSONValue?, near expected: [[Double]]) -> Bool {
        let vectors = value?.arrayValue?.map { $0.arrayValue?.compactMap(\.doubleValue) ?? [] }
        guard let vectors, vectors.count == expected.count else { return false }
        return zip(vectors, expected).allSatisfy { $0.count == $1.count && zip($0, $1).allSatisfy { abs($0 - $1) < 1e-9 } }
    }

    @Test func translatesOllamasRequestsAndAnswers() throws {
        let embed = try EmbeddingRequest.fromOllama(["model": "m:q8_0", "input": ["a", "b"], "keep_alive": "5m", "options": [:]], legacy: false)
        #expect(embed.upstreamBody == ["input": ["a", "b"], "model": "m:q8_0"])
        let legacy = try EmbeddingRequest.fromOllama(["model": "m:q8_0", "prompt": "a"], legacy: true)
        #expect(legacy.upstreamBody == ["input": "a", "model": "m:q8_0"])
        #expect(throws: APIFailure.self) { try EmbeddingRequest.fromOllama(["model": "m:q8_0", "prompt": ["a"]], legacy: true) }
        #expect(throws: APIFailure.self) { try EmbeddingRequest.fromOllama(["model": "m:q8_0", "input": "a"], legacy: true) }

        let answer: JSONValue = [
            "object": "list", "model": "m:q8_0", "usage": ["prompt_tokens": 5, "total_tokens": 5],
            "data": [["index": 0, "embedding": [0.5, -0.5]], ["index": 1, "embedding": [1, 0]]],
        ]
        let ollama = try #require(EmbeddingRequest.ollamaAnswer(answer, model: ModelID("m:q8_0")!, legacy: false, durationNanoseconds: 42))
        #expect(ollama["embeddings"] == [[0.5, -0.5], [1, 0]])
        #expect(ollama["prompt_eval_count"] == 5)
        #expect(ollama["total_duration"] == 42)
        #expect(EmbeddingRequest.ollamaAnswer(answer, model: ModelID("m:q8_0")!, legacy: true, durationNanoseconds: 0) == ["embedding": [0.5, -0.5]])
        #expect(EmbeddingRequest.ollamaAnswer(["error": "x"], model: ModelID("m:q8_0")!, legacy: false, durationNanoseconds: 0) == nil)
        #expect(TokenUsage.embedding(in: answer) == TokenUsage(promptTokens: 5, completionTokens: 0))

        // Ollama's `dimensions`: kept off the node's body, applied to the answer as Ollama does.
        let cut = try EmbeddingRequest.fromOllama(["model": "m:q8_0", "input": "a", "dimensions": 1], legacy: false)
        #expect(cut.upstreamBody == ["input": "a", "model": "m:q8_0"] && cut.ollamaDimensions == 1)
        #expect(try EmbeddingRequest.fromOllama(["model": "m:q8_0", "input": "a", "dimensions": 0], legacy: false).ollamaDimensions == nil)
        #expect(throws: APIFailure.self) { try EmbeddingRequest.fromOllama(["model": "m:q8_0", "input": "a", "dimensions": "1"], legacy: false) }
        let three: JSONValue = ["data": [["embedding": [3, 4, 12]], ["embedding": [0, 0, 1]]]]
        let short = EmbeddingRequest.ollamaAnswer(three, model: ModelID("m:q8_0")!, legacy: false, durationNanoseconds: 0, dimensions: 2)
        #expect(EmbeddingRequestTests.vectors(short?["embeddings"], near: [[0.6, 0.8], [0, 0]]))
        let whole = EmbeddingRequest.ollamaAnswer(three, model: ModelID("m:q8_0")!, legacy: false, durationNanoseconds: 0, dimensions: 3)
        #expect(whole?["embeddings"] == [[3, 4, 12], [0, 0, 1]])

        // Nothing to embed: the model to load, for Ollama's shapes only when it is really nothing.
        #expect(EmbeddingRequest.ollamaModelToLoad(["model": "m:q8_0"], legacy: false) == ModelID("m:q8_0"))
        #expect(EmbeddingRequest.ollamaModelToLoad(["model": "m:q8_0", "input": []], legacy: false) == ModelID("m:q8_0"))
        #expect(EmbeddingRequest.ollamaModelToLoad(["model": "m:q8_0", "prompt": ""], legacy: true) == ModelID("m:q8_0"))
        #expect(EmbeddingRequest.ollamaModelToLoad(["model": "m:q8_0", "input": [""]], legacy: false) == nil)
        #expect(EmbeddingRequest.ollamaModelToLoad(["model": "m:q8_0", "input": "a"], legacy: false) == nil)
        #expect(EmbeddingRequest.ollamaModelToLoad(["model": "m:q8_0", "prompt": []], legacy: true) == nil)
        #expect(EmbeddingRequest.ollamaModelToLoad(["input": ""], legacy: false) == nil)
        #expect(TokenUsage.embedding(in: ["usage": ["prompt_tokens": -1]]) == nil)
    }
}

struct JSONDepthTests {
    @Test func countsNestingOutsideStringsOnly() {
        #expect(JSONValue.nestingDepth(of: Array(#"{"a":[1,{"b":[]}]}"#.utf8)) == 4)
        #expect(JSONValue.nestingDepth(of: Array(#"{"a":"[[[[{{{{"}"#.utf8)) == 1)
        #expect(JSONValue.nestingDepth(of: Array(#"{"a":"\"[[[[","b":[]}"#.utf8)) == 2)
        #expect(JSONValue.nestingDepth(of: Array("1".utf8)) == 0)
    }

    @Test func refusesDeeperThanTheLimitBeforeDecoding() throws {
        let ok = String(repeating: "[", count: JSONValue.maxDepth) + String(repeating: "]", count: JSONValue.maxDepth)
        #expect(try JSONValue.parse(Array(ok.utf8)) != .null)
        let deep = "[" + ok + "]"
        #expect(throws: JSONValue.ParseError.tooDeep(limit: JSONValue.maxDepth)) { try JSONValue.parse(Array(deep.utf8)) }
        #expect(throws: JSONValue.ParseError.invalid) { try JSONValue.parse(Array("{".utf8)) }
    }
}
