import Foundation
import HearthCore
import NIOCore
import NIOFoundationEssentialsCompat

/// Watches one engine response go by, unchanged, to learn the engine's own token counts for the receipt: the usage
/// event at the end of a stream, or the `usage` of a whole answer.
struct UsageTap {
    let streaming: Bool
    /// Streams: the last bytes seen, where the usage event is. Whole answers: the answer, up to its limit.
    private var kept = ByteBuffer()
    private static let streamTail = 16 << 10
    private static let answerLimit = 8 << 20

    /// Events seen on a stream (each ends with a blank line), and the prompt size the engine's per-token timings
    /// gave: what a cut-off stream is worth when its usage event never came.
    private(set) var events = 0
    private(set) var promptFromTimings: Int?
    private var lastByte: UInt8 = 0

    init(streaming: Bool) {
        self.streaming = streaming
    }

    mutating func observe(_ chunk: ByteBuffer) {
        var chunk = chunk
        if streaming {
            for byte in chunk.readableBytesView {
                if byte == UInt8(ascii: "\n") && lastByte == UInt8(ascii: "\n") { events += 1 }
                lastByte = byte
            }
            if promptFromTimings == nil { promptFromTimings = EngineTimings.promptTokens(in: chunk.readableBytesView) }
            kept.writeBuffer(&chunk)
            if kept.readableBytes > 2 * Self.streamTail { kept.moveReaderIndex(forwardBy: kept.readableBytes - Self.streamTail) }
            kept.discardReadBytes()
        } else if kept.readableBytes + chunk.readableBytes <= Self.answerLimit {
            kept.writeBuffer(&chunk)
        }
    }

    /// What a stream cut off before its usage event is worth: the prompt the engine had read (from its timings), and
    /// one token per content event after the first (which carries only the role), as the gateway counts them.
    var partialUsage: TokenUsage? {
        if let usage { return usage }
        guard streaming, events > 0 || promptFromTimings != nil else { return nil }
        // `[DONE]` is no event the gateway counts (a whole stream without usage ends with it).
        let done = kept.readableBytesView.suffix(14).elementsEqual("data: [DONE]\n\n".utf8)
        return TokenUsage(promptTokens: promptFromTimings ?? 0, completionTokens: max(0, events - (done ? 2 : 1)))
    }

    /// The engine's counts, if it reported them.
    var usage: TokenUsage? {
        guard streaming else { return CompletionChunk.parse(kept.readableBytesView)?.usage }
        // The usage event is near the end: cut the tail into events on bytes and try them from the last.
        return kept.withUnsafeReadableBytes { bytes in
            var events: [Range<Int>] = []
            var start = 0
            while start < bytes.count {
                let length = SSEFraming.endOfEvent(in: UnsafeRawBufferPointer(rebasing: bytes[start...])) ?? (bytes.count - start)
                events.append(start..<(start + length))
                start += length
            }
            for range in events.reversed() {
                let event = UnsafeRawBufferPointer(rebasing: bytes[range])
                guard ByteSearch.firstIndex(of: #""usage""#, in: event) != nil, let payload = SSEFraming.payloadBytes(of: event) else { continue }
                if let usage = CompletionChunk.parse(payload)?.usage { return usage }
            }
            return nil
        }
    }
}

/// Signs receipts with the node's key for what it served.
struct ReceiptSigner: Sendable {
    let key: IdentityKey
    let account: NodeID?
    /// The gateway the node is linked to, once known.
    let gateway: @Sendable () -> NodeID?
    /// Where signed receipts are counted for the owner's dashboard.
    var log: ReceiptLog?

    /// The signed receipt as a trailer value (base64url of the COSE_Sign1 bytes), or `nil` when the gateway is not
    /// known or the request carried no id.
    func trailer(
        requestID: String?,
        consumer: String,
        spec: ModelSpec,
        usage: TokenUsage?,
        maxTokens: Int,
        startedAt: Date,
        outcome: Receipt.Outcome,
        pool: PoolShares? = nil
    ) -> String? {
        guard let requestID, !requestID.isEmpty, let gateway = gateway() else { return nil }
        let receipt = Receipt(
            requestID: requestID,
            gateway: gateway,
            node: key.nodeID,
            account: account,
            consumer: consumer,
            model: spec.id,
            modelSHA256: spec.sha256,
            promptTokens: usage?.promptTokens ?? 0,
            completionTokens: min(usage?.completionTokens ?? 0, maxTokens),
            maxTokens: maxTokens,
            startedAt: Int64(startedAt.timeIntervalSince1970 * 1000),
            finishedAt: Int64(Date().timeIntervalSince1970 * 1000),
            outcome: outcome,
            pool: pool
        )
        guard let bytes = try? receipt.signed(by: key).encoded() else { return nil }
        log?.signed(tokens: receipt.promptTokens + receipt.completionTokens)
        return SignedToken.base64url(Data(bytes))
    }
}
