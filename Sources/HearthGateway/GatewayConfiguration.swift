package import HearthCore
package import HearthStore

/// Everything a gateway needs to start. Every field has a default, so tests set only what they care about.
package struct GatewayConfiguration: Sendable {
    /// Address the API listens on. `127.0.0.1` by default: expose it through a reverse proxy or say so explicitly.
    package var host: String = "127.0.0.1"
    /// TCP port; 0 picks a free one.
    package var port: Int = 8080
    /// Folder holding the gateway's SQLite database (`gateway.sqlite`). `nil` keeps it in memory (tests only).
    package var dataDirectory: String?
    /// A PostgreSQL database shared with other gateways; nil keeps `gateway.sqlite` in `dataDirectory`.
    package var database: DatabaseURL?
    /// The key of the network this gateway belongs to: it signs the gateway's membership (shown in its link
    /// certificate) and is trusted for invites. Every gateway of a network has the same one.
    package var networkKey: IdentityKey?
    /// Largest request body accepted, in bytes; larger bodies get 413.
    package var maxBodyBytes: Int = 1 << 20
    /// Ceiling on `max_tokens`; also the limit applied when a client sends none.
    package var limits: RequestLimits = RequestLimits()
    /// Requests per minute allowed to one client address (a burst of this size, refilled evenly).
    package var rateLimitPerMinute: Int = 120
    /// Direct peers whose `X-Forwarded-For` is believed. Requests from anyone else are keyed by their own address.
    package var trustedProxies: Set<String> = []
    /// Host names the API answers beyond loopback (`Host` header, without port); `*` answers any. A gateway bound to
    /// loopback answers only loopback names and these, which stops DNS rebinding; one bound elsewhere answers any
    /// name unless this lists some.
    package var allowedHosts: [String] = []
    /// Web origins whose pages may call the API from a browser, beyond the gateway's own (exact, `*`, or with `*`
    /// wildcards such as `http://localhost:*`). Requests without an `Origin` (curl, SDKs) are not affected.
    package var allowedOrigins: [String] = []
    /// Time a new connection has to send its first request head before it is closed.
    package var headerTimeout: Duration = .seconds(10)
    /// Time a keep-alive connection may sit idle between requests (or a request body may stall) before it is closed.
    package var idleTimeout: Duration = .seconds(60)
    /// API connections one client address may hold open at once (trusted proxies are exempt).
    package var maxConnectionsPerAddress: Int = 256
    /// Address of the mesh port, where nodes dial their links. Nodes must reach it; clients never use it.
    package var meshHost: String = "0.0.0.0"
    /// TCP port of the mesh; 0 picks a free one.
    package var meshPort: Int = 7070
    /// The host nodes dial for this gateway's mesh, as other gateways and operators are told (`/api/gateways`): by
    /// default the mesh host, or the machine's name when that is a wildcard.
    package var advertiseHost: String?
    /// How often a gateway on a shared database or in a network writes its heartbeat row (`gateways`); a row three
    /// heartbeats old is a gateway that went away.
    package var directoryInterval: Duration = .seconds(5)
    /// Public (any node may join) or private (a node needs an invite the first time).
    package var network: NetworkMode = .public
    /// Admit only nodes certified by an account key.
    package var requireDeviceCertificate: Bool = false
    /// On a public network, new nodes allowed per source address per `newNodePeriod` (a burst, refilled evenly).
    package var newNodesPerAddress: Int = 10
    package var newNodePeriod: Duration = .seconds(3600)
    /// Longest hold of a report poll: a node answers at once when its state changes, else after this long.
    package var linkPollInterval: Duration = .seconds(5)
    /// Extra time a node has to answer a report poll before its link counts as dead and is closed.
    package var linkAnswerTimeout: Duration = .seconds(5)
    /// A node whose report is older than this is not routed to (a safety net; a dead link removes it at once).
    package var nodeTTL: Duration = .seconds(15)
    /// How often the registry is swept for silent nodes.
    package var sweepInterval: Duration = .seconds(1)
    /// Attempts per request across different nodes, when a node fails before the first byte.
    package var maxAttempts: Int = 3
    /// How many times a stream whose node broke may be continued on another node (0: never).
    package var maxContinuations: Int = 2
    /// Serve every request with a smaller model of its family when its own has no capacity (a request opts in alone
    /// with `X-Hearth-Allow-Degrade: 1`); answers say so in `X-Hearth-Degraded-From`.
    package var allowDegrade = false
    /// Route to models that nodes serve through their owners' own servers even when the node could not check that the
    /// server's file is the pinned one (`ExternalBackend.verified`).
    package var allowUnverifiedBackends = false
    /// Which answers are spot-checked on another node, and how they are judged.
    package var spotChecks = SpotCheck.Policy()
    /// Seconds a client should wait before retrying when no node is ready.
    package var retryAfterSeconds: Int = 5

    /// Standing and token quotas: the floor for anonymous callers and new accounts, the ceiling, the half-life.
    package var reciprocity: Reciprocity = Reciprocity()

    /// Refuse anonymous callers on `/v1` and `/api` (login and health stay open).
    package var requireAuth: Bool = false
    /// How long a login challenge can be answered.
    package var challengeTTL: Duration = .seconds(60)
    /// How long a login token stays valid.
    package var tokenTTL: Duration = .seconds(3600)
    /// The models the network may run: only what nodes report under a pinned id and hash is ever routed to.
    package var catalog: Catalog = .builtin
    /// Accounts that may control pools besides the gateway's own key (`--operator`).
    package var operators: Set<NodeID> = []
    /// How pools are run: automatic or on request only, their context, when idle ones stop.
    package var pools = PoolPolicy()

    package init() {}

    /// Returns a copy with `change` applied.
    package func with(_ change: (inout GatewayConfiguration) -> Void) -> GatewayConfiguration {
        var copy = self
        change(&copy)
        return copy
    }
}
