import Foundation
import HearthCore
import Hummingbird
import NIOCore

/// The catalog and what the network could run of it. Clients only ever name models: no route takes a hash, a URL or
/// a path, and what nodes load comes from this catalog.
///
/// - `GET /api/catalog`: every entry with its runnability (the planner's verdict).
/// - `GET /api/catalog/allowlist`: the pinned ids and their hashes.
/// - `GET /api/capacity`: the planner's verdicts alone.
///
/// `?context=N` (tokens per request) and `?parallel=N` (slots, default 1) set what the planner sizes for. The context
/// defaults to the one this gateway plans pools with (`--pool-context`, 4096 unless set), so that a page asking
/// "which models run now, alone or pooled" gets the answer a request would meet.
struct CatalogController {
    let catalog: Catalog
    let registry: NodeRegistry
    let defaultContext: Int

    func addRoutes(to router: Router<GatewayRequestContext>) {
        router.get("/api/catalog") { request, _ in
            let verdicts = try plan(request)
            let entries = zip(catalog.entries, verdicts).map { EntryWithVerdict(entry: $0, runnability: $1) }
            return try Self.response(Listing(context: try context(request), data: entries))
        }
        router.get("/api/catalog/allowlist") { _, _ in
            try Self.response(Listing(context: nil, data: catalog.allowlist.map { Pin(id: $0.id, sha256: $0.sha256) }))
        }
        router.get("/api/capacity") { request, _ in
            try Self.response(Listing(context: try context(request), data: try plan(request)))
        }
    }

    private func plan(_ request: Request) throws -> [CapacityVerdict] {
        let nodes = registry.announcements().compactMap(PoolNode.init)
        return CapacityPlanner.plan(
            catalog: catalog,
            nodes: nodes,
            context: try context(request),
            parallel: try Self.positive(request, "parallel", default: 1, max: 64)
        )
    }

    private func context(_ request: Request) throws -> Int {
        try Self.positive(request, "context", default: defaultContext, max: 1 << 21)
    }

    static func positive(_ request: Request, _ name: String, default value: Int, max: Int) throws -> Int {
        Int(try QueryParameter.integer(request, name, default: Int64(value), in: 1...Int64(max)))
    }

    struct EntryWithVerdict: Encodable {
        var entry: CatalogEntry
        var runnability: CapacityVerdict

        func encode(to encoder: any Encoder) throws {
            try entry.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(runnability, forKey: .runnability)
        }

        enum Key: String, CodingKey { case runnability }
    }

    struct Pin: Encodable {
        var id: ModelID
        var sha256: SHA256Digest?
    }

    struct Listing<Item: Encodable>: Encodable {
        var object = "list"
        var context: Int?
        var data: [Item]

        init(context: Int?, data: [Item]) {
            self.context = context
            self.data = data
        }
    }

    static func response(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(
            status: .ok,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value)))
        )
    }
}
