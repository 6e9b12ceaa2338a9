import Foundation
import HearthCore

/// The seed inputs of each target: real encodings made by Hearth's own encoders (signed with `FuzzKeys`), so the
/// fuzzer starts from what the parsers see in service. `hearth-fuzz` writes them when `HEARTH_FUZZ_SEEDS` names a
/// folder; `fuzz/run.sh seeds` merges them into the committed corpora.
package enum FuzzSeeds {
    package static func seeds(for target: String) -> [[UInt8]] {
        switch target {
        case "cbor": cbor
        case "cose", "receipt": signedReceipts
        case "token": tokens
        case "completion": completionBodies
        case "ollama": ollamaBodies
        case "sse": sseStreams
        case "catalog":
            [Array(Catalog.builtin.encoded()), Array(Catalog.builtin.encoded(replacesBuiltin: true)), Array(#"{"version":1,"models":[]}"#.utf8)]
        case "report": reports
        default: []
        }
    }

    static let model = ModelID("smollm2-135m-instruct:q4_1")!
    static let sha256 = SHA256Digest(hex: String(repeating: "ab", count: 32))!

    static func receipt(_ outcome: Receipt.Outcome, account: NodeID?) -> Receipt {
        Receipt(
            requestID: "chatcmpl-\(outcome.rawValue)",
            gateway: FuzzKeys.key(1).nodeID,
            node: FuzzKeys.node.nodeID,
            account: account,
            consumer: "account:\(FuzzKeys.key(2).nodeID)",
            model: model,
            modelSHA256: sha256,
            promptTokens: 31,
            completionTokens: 17,
            maxTokens: 64,
            startedAt: 1_764_000_000_000,
            finishedAt: 1_764_000_001_250,
            outcome: outcome
        )
    }

    static var signedReceipts: [[UInt8]] {
        // A pooled receipt (version 2) beside the plain ones: the head first, then two members with their layers.
        var pooled = receipt(.ok, account: nil)
        pooled.pool = PoolShares(
            pool: PoolID("p-0123456789ab")!,
            epoch: 2,
            shares: [
                .init(node: FuzzKeys.node.nodeID, layers: 8), .init(node: FuzzKeys.key(3).nodeID, layers: 11),
                .init(node: FuzzKeys.key(4).nodeID, layers: 11),
            ]
        )
        let receipts = Receipt.Outcome.allCases.map { receipt($0, account: $0 == .ok ? FuzzKeys.key(2).nodeID : nil) } + [pooled]
        return receipts.flatMap { receipt -> [[UInt8]] in
            let signed = (try? receipt.signed(by: FuzzKeys.node).encoded()) ?? []
            return [signed, (try? receipt.cbor.encoded()) ?? []]
        }
    }

    static var cbor: [[UInt8]] {
        let items: [CBOR] = [
            .unsigned(0), .unsigned(23), .unsigned(24), .unsigned(1 << 40), .negative(0), .negative(1 << 20),
            .bytes([1, 2, 3]), .text("héllo"), .array([.null, .bool(true), .bool(false)]),
            .map([(.text("b"), .int(2)), (.text("a"), .int(1)), (.int(-1), .bytes([]))]), .tagged(18, .array([])),
        ]
        return items.compactMap { try? $0.encoded() } + signedReceipts
    }

    static var tokens: [[UInt8]] {
        let account = FuzzKeys.key(2)
        let certificate = try? DeviceCertificate.issue(
            account: account,
            deviceKey: FuzzKeys.node.publicKey,
            deviceName: "kitchen laptop",
            issuedAt: Date(timeIntervalSince1970: 1_764_000_000),
            validFor: 86_400 * 365
        )
        let invite = try? InviteToken.issue(
            gateway: FuzzKeys.key(1),
            id: "0123456789abcdef",
            maxUses: 5,
            expiresAt: Date(timeIntervalSince1970: 1_800_000_000)
        )
        let join = JoinAddress(host: "gateway.example.org", port: 7443, gatewayID: FuzzKeys.key(1).nodeID)
        return [certificate?.token, invite?.token, join.description, "[::1]:7443"].compactMap { $0.map { Array($0.utf8) } }
    }

    static let completionBodies: [[UInt8]] = [
        #"{"model":"smollm2-135m-instruct:q4_1","messages":[{"role":"user","content":"Hello"}]}"#,
        #"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":[{"type":"text","text":"Hi"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":16,"temperature":0.2,"top_p":0.9,"seed":4,"stop":["\n"]}"#,
        #"{"model":"m","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"tool_choice":"auto"}"#,
        #"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}"#,
        #"{"model":"m","prompt":"Once upon a time","max_completion_tokens":8,"logprobs":2,"n":1}"#,
        #"{"model":"m","prompt":["a","b"],"stream":false,"response_format":{"type":"json_object"}}"#,
    ].map { Array($0.utf8) }

    static let ollamaBodies: [[UInt8]] = [
        #"{"model":"smollm2","messages":[{"role":"user","content":"Why is the sky blue?"}]}"#,
        #"{"model":"smollm2","messages":[{"role":"system","content":"terse"},{"role":"user","content":"hi","images":[]}],"stream":false,"options":{"num_predict":32,"temperature":0.1,"top_k":20,"stop":["."]},"format":"json"}"#,
        #"{"model":"smollm2","prompt":"Write a haiku","system":"You are a poet","options":{"num_predict":-1,"seed":3},"format":{"type":"object","properties":{"a":{"type":"string"}}}}"#,
        #"{"name":"smollm2","prompt":"","stream":true,"keep_alive":"5m"}"#,
    ].map { Array($0.utf8) }

    static var sseStreams: [[UInt8]] {
        let chunk =
            #"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764000000,"model":"m","choices":[{"index":0,"delta":{"content":" hi"},"finish_reason":null}],"timings":{"prompt_n":9,"predicted_n":1}}"#
        let usage =
            #"{"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#
        let llamaServer = "data: \(chunk)\n\ndata: \(chunk)\n\ndata: \(usage)\n\ndata: [DONE]\n\n"
        let crlf = "event: message\r\ndata: {\"a\":1}\r\n\r\n: comment\r\n\r\ndata: b\r\ndata: c\r\n\r\n"
        return [[3] + Array(llamaServer.utf8), [0] + Array(crlf.utf8), [31] + Array("data: unterminated".utf8)]
    }

    static var reports: [[UInt8]] {
        let served = ServedModel(id: model, aliases: [ModelID("smollm2")!], sha256: sha256, contextLength: 8192, sizeBytes: 88 << 20, state: .ready)
        let standby = ServedModel(
            id: ModelID("qwen2.5-0.5b-instruct:q8_0")!,
            sha256: sha256,
            contextLength: 4096,
            sizeBytes: 500 << 20,
            state: .standby
        )
        let failed = ServedModel(
            id: ModelID("gemma3-270m-it:q4_k_m")!,
            sha256: sha256,
            contextLength: 2048,
            sizeBytes: 250 << 20,
            state: .failed,
            detail: "exited 1"
        )
        let reports = [
            NodeReport(
                name: "kitchen",
                hardware: HardwareProfile(cpuCores: 8, memoryTotalBytes: 16 << 30, memoryAvailableBytes: 9 << 30, diskFreeBytes: 100 << 30, gpus: []),
                limits: NodeLimits(threads: 4, contextSize: 4096, parallelSlots: 2, memoryBytes: 6 << 30),
                models: [served, standby, failed],
                inFlight: 1,
                draining: false,
                version: "0.3.0"
            ),
            NodeReport(
                name: "lab",
                hardware: HardwareProfile(
                    cpuCores: 2,
                    memoryTotalBytes: 4 << 30,
                    memoryAvailableBytes: 1 << 30,
                    diskFreeBytes: 1 << 30,
                    gpus: ["none"]
                ),
                limits: NodeLimits(threads: 1, contextSize: 512, parallelSlots: 1),
                models: [],
                inFlight: 0,
                draining: true,
                version: "0.3.0"
            ),
        ]
        return reports.compactMap { try? JSONEncoder().encode($0) }.map { Array($0) }
    }
}
