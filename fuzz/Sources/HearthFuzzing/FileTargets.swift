import Foundation
import HearthCore

extension FuzzTarget {
    /// The operator's catalog file: an accepted file reads back the same from its own encoding, and sizing and
    /// capacity planning over its entries never trap, whatever shapes and sizes it states.
    static let catalog = FuzzTarget(name: "catalog", summary: "catalog file (the operator's allowlist)") { bytes in
        guard let (catalog, replaces) = try? Catalog.decode(Data(bytes)) else { return nil }
        guard let (again, againReplaces) = try? Catalog.decode(catalog.encoded(replacesBuiltin: replaces)), again == catalog,
            againReplaces == replaces
        else { return "a catalog changed through its file form" }
        let merged = Catalog.builtin.merged(with: catalog)
        for entry in catalog.entries {
            guard merged.entries.contains(entry) else { return "merging lost the entry \(entry.id)" }
            if let sha256 = entry.sha256, !catalog.allows(entry.id, sha256: sha256) { return "a pinned entry is not allowed" }
            _ = catalog.resolve(entry.id)
            _ = ModelSizer.estimate(entry, context: entry.contextLength, parallel: 4)
        }
        _ = CapacityPlanner.plan(catalog: catalog, nodes: FuzzNodes.pool, context: 4096, parallel: 2)
        return nil
    }

    /// A node's report, as the gateway reads it over the link: within bounds, it routes and plans without trapping,
    /// and the router only ever picks nodes that serve the model asked for.
    static let report = FuzzTarget(name: "report", summary: "the link's node report JSON, validated, routed and planned") { bytes in
        guard let report = try? JSONDecoder().decode(NodeReport.self, from: Data(bytes)), (try? report.validate()) != nil else { return nil }
        guard let encoded = try? JSONEncoder().encode(report), (try? JSONDecoder().decode(NodeReport.self, from: encoded)) == report else {
            return "a report changed through its JSON form"
        }
        let announcement = NodeAnnouncement(nodeID: FuzzKeys.node.nodeID, report: report)
        let node = RoutableNode(
            id: announcement.nodeID,
            models: report.models,
            parallelSlots: report.limits.parallelSlots,
            inFlight: report.inFlight,
            recentLatency: nil,
            draining: report.draining
        )
        for model in report.models {
            for name in [model.id] + model.aliases {
                guard case .candidates(let nodes, let canonical) = RoutePlanner.plan(model: name, nodes: [node], catalog: .builtin)
                else { continue }
                if nodes != [node.id] || node.model(named: canonical) == nil {
                    return "the router picked a node for \(name) that does not serve it"
                }
            }
        }
        let pool = (PoolNode(announcement).map { [$0] } ?? []) + FuzzNodes.pool
        _ = CapacityPlanner.plan(catalog: .builtin, nodes: pool, context: report.limits.contextSize, parallel: report.limits.parallelSlots)
        return nil
    }

    /// GGUF headers: an accepted header is consistent, and a "truncated" answer asks for more bytes than it had.
    static let gguf = FuzzTarget(name: "gguf", summary: "GGUF header reader") { bytes in
        switch Result(catching: { () throws(GGUFError) in try GGUFHeader(bytes: bytes) }) {
        case .success(let header):
            if header.dataOffset % header.alignment != 0 { return "data offset not aligned" }
            if header.version != 2 && header.version != 3 { return "accepted version \(header.version)" }
        case .failure(let error) where error.code == .truncated:
            guard let needed = error.neededBytes else { return "truncated without saying how many bytes it needs" }
            if needed <= UInt64(bytes.count) { return "truncated but needs only \(needed) of \(bytes.count) bytes" }
        case .failure:
            break
        }
        return nil
    }
}

/// Nodes of a typical small network, for capacity planning.
enum FuzzNodes {
    static let pool: [PoolNode] = (1...3).map { index in
        let key = FuzzKeys.key(UInt8(index))
        return PoolNode(id: key.nodeID, name: "node-\(index)", memoryBytes: UInt64(index) << 32)
    }
}
