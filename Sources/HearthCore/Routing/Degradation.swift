/// A request may allow a smaller model of the same family when its own has no capacity (docs/ROUTING.md,
/// "Degradation"): never silently, the answer says what served it.
package enum Degradation {
    /// The request header that allows it (`1`); a gateway flag makes it the default.
    package static let header = "X-Hearth-Allow-Degrade"
    /// Response headers: the model asked for, and the one that served.
    package static let degradedFromHeader = "X-Hearth-Degraded-From"
    package static let servedModelHeader = "X-Hearth-Served-Model"

    /// The catalog's entries that may stand in for `name`, best first: the same family, smaller (fewer parameters, or
    /// as many in a smaller file), the largest of those first. Empty when the catalog does not know the name.
    package static func alternatives(for name: ModelID, in catalog: Catalog) -> [CatalogEntry] {
        guard let asked = catalog.resolve(name, includeUnpinned: true) else { return [] }
        return catalog.entries
            .filter { entry in
                entry.family == asked.family && entry.id != asked.id
                    && (entry.parameters < asked.parameters || (entry.parameters == asked.parameters && entry.sizeBytes < asked.sizeBytes))
            }
            .sorted { ($0.parameters, $0.sizeBytes) > ($1.parameters, $1.sizeBytes) }
    }
}
