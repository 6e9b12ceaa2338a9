/// The element type of llama.cpp's KV cache (`--cache-type-k/-v`).
package enum KVCacheType: String, Codable, Sendable, CaseIterable {
    case f16
    case q8_0
    case q4_0

    /// Bytes per cached element, block overhead included (Q8_0: 34 bytes per 32, Q4_0: 18 per 32).
    var bytesPerElement: Double {
        switch self {
        case .f16: 2
        case .q8_0: 34.0 / 32
        case .q4_0: 18.0 / 32
        }
    }
}

/// Memory a `llama-server` needs to serve one model on the CPU, by part.
package struct MemoryEstimate: Codable, Sendable, Equatable {
    /// The tensor data, memory-mapped from the GGUF file.
    package var weightsBytes: UInt64
    /// K and V for every layer, KV head and position of every slot.
    package var kvCacheBytes: UInt64
    /// The scheduler's compute buffer for one micro-batch.
    package var computeBytes: UInt64
    /// The process itself: code, libraries, tokenizer, HTTP server.
    package var runtimeBytes: UInt64

    /// The sum of the parts (saturating: a hostile shape cannot overflow it).
    package var totalBytes: UInt64 { [weightsBytes, kvCacheBytes, computeBytes, runtimeBytes].reduce(0) { $0.addingSaturated($1) } }

    private enum CodingKeys: String, CodingKey {
        case weightsBytes, kvCacheBytes, computeBytes, runtimeBytes, totalBytes
    }

    package init(weightsBytes: UInt64, kvCacheBytes: UInt64, computeBytes: UInt64, runtimeBytes: UInt64) {
        self.weightsBytes = weightsBytes
        self.kvCacheBytes = kvCacheBytes
        self.computeBytes = computeBytes
        self.runtimeBytes = runtimeBytes
    }

    /// Reads the parts; the total is computed, not trusted.
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        weightsBytes = try container.decode(UInt64.self, forKey: .weightsBytes)
        kvCacheBytes = try container.decode(UInt64.self, forKey: .kvCacheBytes)
        computeBytes = try container.decode(UInt64.self, forKey: .computeBytes)
        runtimeBytes = try container.decode(UInt64.self, forKey: .runtimeBytes)
    }

    /// The parts and, for readers of the JSON, their total.
    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(weightsBytes, forKey: .weightsBytes)
        try container.encode(kvCacheBytes, forKey: .kvCacheBytes)
        try container.encode(computeBytes, forKey: .computeBytes)
        try container.encode(runtimeBytes, forKey: .runtimeBytes)
        try container.encode(totalBytes, forKey: .totalBytes)
    }
}

/// Estimates what serving a model costs in memory, from its shape. The formula follows how llama.cpp allocates on
/// the CPU (flash attention on, its default there):
///
/// - weights = the GGUF's tensor data (the file size less its header);
/// - KV cache = 2 (K and V) × layers × KV heads × head dim × context × slots × bytes per element (2 for f16) —
///   llama-server allocates the whole `--ctx-size`, which Hearth sets to context × slots;
/// - compute = micro-batch (512) × (13 × embedding × 4 bytes + context × 2 bytes): activations, and the f16
///   attention mask over one slot's context;
/// - runtime = 18 MiB for the process itself.
///
/// The compute term was fitted to llama-server's own "compute buffer size" lines for SmolLM2 at contexts 1 Ki to
/// 32 Ki; the whole estimate is checked against measured RSS by `SizerCalibrationTests`.
package enum ModelSizer {
    package static let microBatch: UInt64 = 512
    package static let runtimeBytes: UInt64 = 18 << 20

    /// - Parameters:
    ///   - weightsBytes: tensor data, or the file size when only that is known.
    ///   - context: tokens per slot.
    ///   - parallel: slots (llama-server `--parallel`).
    package static func estimate(
        weightsBytes: UInt64,
        shape: ModelShape,
        context: Int,
        parallel: Int = 1,
        cacheType: KVCacheType = .f16
    ) -> MemoryEstimate {
        // In floating point, so that no shape or context from a file or a query can overflow; saturated on the way back.
        let context = Double(max(context, 1))
        let slots = Double(max(parallel, 1))
        let perToken = 2 * Double(max(shape.layers, 0)) * Double(max(shape.kvHeads, 0)) * Double(max(shape.headDim, 0)) * cacheType.bytesPerElement
        let kv = perToken * context * slots
        let compute = Double(microBatch) * (13 * Double(max(shape.embedding, 0)) * 4 + context * 2)
        return MemoryEstimate(
            weightsBytes: weightsBytes,
            kvCacheBytes: UInt64(saturating: kv),
            computeBytes: UInt64(saturating: compute),
            runtimeBytes: runtimeBytes
        )
    }

    /// The estimate for a catalog entry, its file size standing for the weights.
    package static func estimate(_ entry: CatalogEntry, context: Int, parallel: Int = 1, cacheType: KVCacheType = .f16) -> MemoryEstimate {
        estimate(weightsBytes: entry.sizeBytes, shape: entry.shape, context: context, parallel: parallel, cacheType: cacheType)
    }
}

extension ModelShape {
    /// The shape a GGUF header states, when it states enough: `<arch>.block_count`, `.embedding_length`,
    /// `.attention.head_count` and `.attention.head_count_kv` (the head dim from `.attention.key_length`, else
    /// embedding / heads).
    package init?(header: GGUFHeader) {
        guard let arch = header.architecture,
            let layers = header["\(arch).block_count"]?.integer,
            let embedding = header["\(arch).embedding_length"]?.integer,
            let heads = header["\(arch).attention.head_count"]?.integer, heads > 0
        else { return nil }
        let kvHeads = header["\(arch).attention.head_count_kv"]?.integer ?? heads
        let headDim = header["\(arch).attention.key_length"]?.integer ?? embedding / heads
        self.init(layers: Int(layers), kvHeads: Int(kvHeads), headDim: Int(headDim), embedding: Int(embedding), architecture: arch)
    }
}

extension UInt64 {
    /// `value` rounded down, or `UInt64.max` when it is larger.
    init(saturating value: Double) {
        self = value >= 18_446_744_073_709_549_568 ? .max : (value > 0 ? UInt64(value) : 0)
    }

    /// `self + other`, or `UInt64.max` when that overflows.
    package func addingSaturated(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }

    /// Bytes in binary units with one decimal: `1.5 GiB`, `98.4 MiB`.
    package var binaryBytes: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(self)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        if unit == 0 { return "\(self) B" }
        let tenths = (value * 10).rounded() / 10
        return "\(tenths) \(units[unit])"
    }
}
