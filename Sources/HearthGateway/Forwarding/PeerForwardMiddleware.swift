import Foundation
import HTTPTypes
import HearthCore
import HearthMesh
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Forwards a completion or embeddings request that no node of this gateway can serve to a gateway of the network
/// whose nodes serve its model (docs/SCALE-OUT.md, "Forwarding"). The peer gets the client's request as sent (its
/// credential included: the database is shared, so it authenticates, meters and credits the request itself) with the
/// client's address in `X-Forwarded-For`, over the peer link it dialed to this gateway; its answer is relayed byte for
/// byte. This gateway records nothing of a forwarded request: the serving gateway does, once.
///
/// Only a gateway in a network looks at the body here; a request that came from a peer is never forwarded again. When
/// the gateways the directory says serve the model cannot be reached (one was just killed, its nodes are still
/// redialing), the client gets 503 `model_not_ready` with `Retry-After`, as while a local node loads: the model does
/// exist on this network, and a balancer or client that retries is served once the nodes have moved.
struct PeerForwardMiddleware: RouterMiddleware {
    typealias Context = GatewayRequestContext
    /// The links the network's other gateways dialed to this one.
    let peers: NodeLinks
    let registry: NodeRegistry
    let catalog: Catalog
    let database: GatewayDatabase
    let network: NodeID
    /// This gateway, which is never forwarded to.
    let gateway: NodeID
    let ttl: Double
    let maxBodyBytes: Int
    let retryAfterSeconds: Int
    /// What this gateway has forwarded to each peer and not yet seen finish.
    let forwarding = PeerLoad()

    static let forwardable: Set<String> = [
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/api/chat", "/api/generate", "/api/embed", "/api/embeddings",
    ]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post, !context.viaPeer, Self.forwardable.contains(request.uri.path) else {
            return try await next(request, context)
        }
        let body = try await request.body.collect(upTo: maxBodyBytes)
        let kept = Request(head: request.head, body: RequestBody(buffer: body))
        // Read once: the route gets the parsed body with the context (a body that is not JSON is the route's to refuse).
        var context = context
        context.body = try? JSONValue.parse(body.readableBytesView)
        guard let name = context.body?["model"]?.stringValue, let model = ModelID(name),
            !RoutePlanner.plan(model: model, nodes: registry.routableNodes(), catalog: catalog).hasCandidates
        else { return try await next(kept, context) }
        let since = Date().timeIntervalSince1970 - ttl
        let serving = (try? await database.liveGateways(network: network.rawValue, since: since)) ?? []
        // The name as asked, or the catalog's choice for a name without quantization, as local routing reads it.
        func serves(_ row: GatewayRecord) -> Bool {
            row.models.contains(name) || catalog.resolve(model) { row.models.contains($0.id.rawValue) } != nil
        }
        var unreachable = false
        for row in forwarding.leastLoadedFirst(serving.filter { $0.id != gateway.rawValue && serves($0) }) {
            guard let id = NodeID(row.id), let link = peers.link(to: id) else {
                unreachable = true
                continue
            }
            var headers = HTTPHeaders()
            for field in request.headers where !Self.hopByHop.contains(field.name.canonicalName) {
                headers.add(name: field.name.rawName, value: field.value)
            }
            headers.add(name: "x-forwarded-for", value: context.clientAddress)
            headers.add(name: "content-length", value: String(body.readableBytes))
            let response: LinkResponse
            // Counted until the answer's body is done with, or dropped unwritten.
            let ticket = forwarding.started(row.id)
            do {
                response = try await link.send(.POST, request.uri.description, headers: headers, body: body)
            } catch {
                context.logger.warning("forwarding to a peer gateway failed", metadata: ["gateway.peer": "\(id.short)", "error": "\(error)"])
                unreachable = true
                continue
            }
            var fields = HTTPFields()
            for header in response.head.headers
            where !Self.hopByHop.contains(header.name.lowercased()) && !Self.ownHeaders.contains(header.name.lowercased()) {
                if let name = HTTPField.Name(header.name) { fields.append(HTTPField(name: name, value: header.value)) }
            }
            // Which gateway served it, and under which request id its usage row and ledger entry are stored there.
            fields[.init("X-Hearth-Gateway")!] = id.short
            if let served = response.head.headers.first(name: "x-request-id") { fields[.init("X-Hearth-Served-Request-Id")!] = served }
            let upstream = response.body
            return Response(
                status: .init(code: Int(response.head.status.code)),
                headers: fields,
                body: ResponseBody { writer in
                    defer { withExtendedLifetime(ticket) {} }
                    while let chunk = try await upstream.next() { try await writer.write(chunk) }
                    try await writer.finish(nil)
                }
            )
        }
        if unreachable {
            throw OpenAIError(
                APIFailure(
                    .unavailable,
                    "'\(name)' is served by another gateway of this network that cannot be reached right now; try again shortly.",
                    code: "model_not_ready"
                ),
                headers: [.retryAfter: String(retryAfterSeconds)]
            )
        }
        return try await next(kept, context)
    }

    static let hopByHop: Set<String> = ["host", "connection", "keep-alive", "transfer-encoding", "content-length", "x-forwarded-for", "upgrade"]
    /// Headers this gateway sets on every answer itself (its request id, rate limit, date).
    static let ownHeaders: Set<String> = ["x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "date", "server"]
}

/// Requests a gateway has forwarded to each peer and not yet seen finish: a peer with fewer of them for each of its
/// nodes is asked first. Only this gateway's own forwards count (the directory's rows are up to 5 s old and say nothing
/// of load), so two gateways forwarding to the same peers each spread their own share.
final class PeerLoad: Sendable {
    fileprivate let counts = Mutex<[String: Int]>([:])

    /// One forward to `peer`, counted until the ticket is released.
    final class Ticket: Sendable {
        let load: PeerLoad
        let peer: String
        init(_ load: PeerLoad, _ peer: String) {
            self.load = load
            self.peer = peer
            load.counts.withLock { $0[peer, default: 0] += 1 }
        }
        deinit {
            load.counts.withLock { open in
                let left = (open[peer] ?? 1) - 1
                open[peer] = left > 0 ? left : nil
            }
        }
    }

    func started(_ peer: String) -> Ticket { Ticket(self, peer) }

    /// Forwards open to `peer` now.
    func open(to peer: String) -> Int { counts.withLock { $0[peer] ?? 0 } }

    /// `rows` by open forwards per node, fewest first; rows that tie keep their order (the directory's: oldest first).
    func leastLoadedFirst(_ rows: [GatewayRecord]) -> [GatewayRecord] {
        let open = counts.withLock { $0 }
        func load(_ row: GatewayRecord) -> Double { Double(open[row.id] ?? 0) / Double(max(row.nodes, 1)) }
        return rows.enumerated().sorted { (load($0.element), $0.offset) < (load($1.element), $1.offset) }.map(\.element)
    }
}
