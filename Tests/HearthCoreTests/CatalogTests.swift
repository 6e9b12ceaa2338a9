import Foundation
import Testing

@testable import HearthCore

/// A catalog entry for tests; `sha256: nil` makes it unpinned.
func catalogEntry(
    _ id: String,
    quantization: String = "Q8_0",
    sizeBytes: UInt64 = 1 << 30,
    sha256: SHA256Digest? = SHA256Digest(hex: String(repeating: "ab", count: 32)),
    approved: Bool = false,
    shape: ModelShape = ModelShape(layers: 32, kvHeads: 8, headDim: 128, embedding: 4096)
) -> CatalogEntry {
    CatalogEntry(
        id: ModelID(id)!,
        name: id,
        family: "test",
        parameters: 1_000_000,
        tier: .small,
        quantization: quantization,
        contextLength: 8192,
        licence: "MIT",
        sizeBytes: sizeBytes,
        shape: shape,
        sources: ["http://127.0.0.1/\(id).gguf"],
        sha256: sha256,
        approvedForConstrainedPools: approved
    )
}

@Suite struct CatalogTests {
    @Test func builtinCatalogDecodesAndPinsOnlyTheDefaultModel() throws {
        let (catalog, replaces) = try Catalog.decode(Data(Catalog.builtinJSON.utf8))
        #expect(!replaces)
        #expect(catalog == Catalog.builtin)
        #expect(catalog.entries.count >= 10)
        #expect(catalog.allowlist.map(\.id) == [DefaultModel.id])
        let smol = try #require(catalog[DefaultModel.id])
        #expect(smol.sha256 == DefaultModel.sha256)
        #expect(smol.sizeBytes == DefaultModel.sizeBytes)
        #expect(smol.shape == ModelShape(layers: 30, kvHeads: 3, headDim: 64, embedding: 576, vocabulary: 49152, architecture: "llama"))
        // From tiny to 70B and a mixture of experts, so the planner has something real to show.
        #expect(Set(catalog.entries.map(\.tier)).isSuperset(of: [.tiny, .small, .medium, .large, .moe, .embed, .code]))
        #expect(catalog.entries.contains { $0.parameters >= 70_000_000_000 })
        for entry in catalog.entries where !entry.isPinned {
            #expect(entry.sources.allSatisfy { $0.hasPrefix("https://") }, "\(entry.id)")
        }
    }

    @Test func anEntryWithoutAHashMustSayItIsNotPinned() throws {
        var object = try #require(
            try JSONSerialization.jsonObject(with: Catalog(entries: [catalogEntry("a:q8_0", sha256: nil)]).encoded()) as? [String: Any]
        )
        var models = try #require(object["models"] as? [[String: Any]])
        #expect(models[0]["pinned"] as? Bool == false)
        models[0].removeValue(forKey: "pinned")
        object["models"] = models
        let data = try JSONSerialization.data(withJSONObject: object)
        #expect(throws: CatalogError.self) { try Catalog.decode(data) }
        do {
            _ = try Catalog.decode(data)
        } catch {
            #expect(error.description.contains("pin it or mark it"))
        }
    }

    @Test func refusesContradictionsDuplicatesBadHashesAndOtherVersions() throws {
        let pinned = String(decoding: try Catalog(entries: [catalogEntry("a:q8_0")]).encoded(), as: UTF8.self)
        let contradiction = pinned.replacingOccurrences(of: "\"pinned\" : true", with: "\"pinned\" : false")
        #expect(contradiction != pinned)
        let badHash = pinned.replacingOccurrences(of: String(repeating: "ab", count: 32), with: "xyz")
        let version = pinned.replacingOccurrences(of: "\"version\" : 1", with: "\"version\" : 2")
        let missingShape = pinned.replacingOccurrences(of: "\"shape\"", with: "\"shap\"")
        let absurdShape = pinned.replacingOccurrences(of: "\"layers\" : 32", with: "\"layers\" : 4000000000")
        #expect(absurdShape != pinned)
        for bad in [contradiction, badHash, version, missingShape, absurdShape, "[]", "not json", ""] {
            #expect(throws: CatalogError.self, "\(bad.prefix(40))") { try Catalog.decode(Data(bad.utf8)) }
        }
        #expect(throws: CatalogError.self) { try Catalog(entries: [catalogEntry("a:q8_0"), catalogEntry("a:q8_0")]) }
    }

    @Test func roundTripsThroughItsFileFormat() throws {
        let catalog = try Catalog(entries: [catalogEntry("a:q8_0"), catalogEntry("b:q4_k_m", sha256: nil, approved: true)])
        let (decoded, replaces) = try Catalog.decode(catalog.encoded(replacesBuiltin: true))
        #expect(decoded == catalog)
        #expect(replaces)
    }

    @Test func q8IsTheDefaultQuantization() throws {
        let catalog = try Catalog(entries: [
            catalogEntry("m:q4_k_m", quantization: "Q4_K_M", sizeBytes: 4 << 30),
            catalogEntry("m:q8_0", quantization: "Q8_0", sizeBytes: 8 << 30),
            catalogEntry("m:q6_k", quantization: "Q6_K", sizeBytes: 6 << 30, approved: true),
        ])
        #expect(catalog.resolve(ModelID("m")!)?.id == ModelID("m:q8_0"))
        // An exact id is always what the client asked for.
        #expect(catalog.resolve(ModelID("m:q4_k_m")!)?.id == ModelID("m:q4_k_m"))
        // When the Q8_0 does not fit, only the approved lower quantization may stand in.
        #expect(catalog.resolve(ModelID("m")!) { $0.sizeBytes <= 6 << 30 }?.id == ModelID("m:q6_k"))
        #expect(catalog.resolve(ModelID("m")!) { $0.sizeBytes <= 4 << 30 }?.id == ModelID("m:q8_0"))
        #expect(catalog.resolve(ModelID("other")!) == nil)
        // Ollama's default tag, which its clients add to a name without one, is no quantization.
        #expect(catalog.resolve(ModelID("m:latest")!)?.id == ModelID("m:q8_0"))
        #expect(catalog.resolve(ModelID("other:latest")!) == nil)
    }

    @Test func withoutAQ8TheLeastQuantizedPinnedFileIsUsed() throws {
        let catalog = try Catalog(entries: [
            catalogEntry("m:q4_k_m", quantization: "Q4_K_M", sizeBytes: 4 << 30),
            catalogEntry("m:q6_k", quantization: "Q6_K", sizeBytes: 6 << 30),
            catalogEntry("m:f16", quantization: "F16", sizeBytes: 16 << 30, sha256: nil),
        ])
        #expect(catalog.resolve(ModelID("m")!)?.id == ModelID("m:q6_k"))
        #expect(catalog.resolve(ModelID("m")!) { $0.sizeBytes <= 5 << 30 }?.id == ModelID("m:q4_k_m"))
        // Planning may size the unpinned F16; loading never picks it.
        #expect(catalog.resolve(ModelID("m")!, includeUnpinned: true)?.id == ModelID("m:f16"))
    }

    @Test func allowsOnlyTheExactPinnedHash() throws {
        let other = SHA256Digest(hex: String(repeating: "cd", count: 32))!
        let catalog = try Catalog(entries: [catalogEntry("a:q8_0"), catalogEntry("b:q8_0", sha256: nil)])
        #expect(catalog.allows(ModelID("a:q8_0")!, sha256: SHA256Digest(hex: String(repeating: "ab", count: 32))!))
        #expect(!catalog.allows(ModelID("a:q8_0")!, sha256: other))
        #expect(!catalog.allows(ModelID("b:q8_0")!, sha256: other))
        #expect(!catalog.allows(ModelID("c:q8_0")!, sha256: other))
        let pinned = try catalog.pinning(ModelID("b:q8_0")!, sha256: other, sizeBytes: 42)
        #expect(pinned.allows(ModelID("b:q8_0")!, sha256: other))
        #expect(pinned[ModelID("b:q8_0")!]?.sizeBytes == 42)
        #expect(pinned.allowlist.count == 2)
        #expect(throws: CatalogError.self) { try catalog.pinning(ModelID("c:q8_0")!, sha256: other) }
    }

    @Test func anOverlayReplacesEntriesInPlaceAndAddsNewOnes() throws {
        let base = try Catalog(entries: [catalogEntry("a:q8_0", sha256: nil), catalogEntry("b:q8_0")])
        let overlay = try Catalog(entries: [catalogEntry("a:q8_0"), catalogEntry("c:q8_0")])
        let merged = base.merged(with: overlay)
        #expect(merged.entries.map(\.id.rawValue) == ["a:q8_0", "b:q8_0", "c:q8_0"])
        #expect(merged[ModelID("a:q8_0")!]?.isPinned == true)
    }
}
