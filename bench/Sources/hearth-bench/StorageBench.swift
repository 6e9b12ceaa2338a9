import Crypto
import Foundation
import HearthCore
import HearthGateway
import HearthStore
import HearthTesting
import Logging

/// `--parts storage`: what the database costs a request, on SQLite (embedded) and on PostgreSQL (shared), with one
/// gateway and with two sharing the database, over tables seeded as a large network would have them.
///
/// A generator fills each database with `accounts` accounts (standing, a quota bucket and an hour of activity each) and
/// `nodes` nodes (members and certified devices) and a directory of gateways. Then each "request" does what the
/// gateway does against the database for one served, credited request by a logged-in account: read its standing and
/// quota bucket, check the node's device is not revoked, note the request in flight, and record it (usage row, quota
/// charge, standing, the ledger entry with its receipt) through the group commit. Accounts and nodes are drawn at
/// random. Sequential requests give the latency of that work (p50/p99); `concurrency` requests at once, through one
/// gateway and then split over two (two connection pools, two ledger chains), give the throughput. CPU per request is
/// this process's (and, for PostgreSQL, the server's processes'), so it compares with the gateway's own CPU per request
/// in `bench/results/proxies.md`.
enum StorageBench {
    struct Settings {
        var accounts = 100_000
        var nodes = 10_000
        var requests = 2_000
        var concurrency = 32
    }

    struct Figures {
        var p50 = 0.0
        var p99 = 0.0
        var oneGatewayRate = 0.0
        var twoGatewayRate = 0.0
        var cpuPerRequest = 0.0
        var admissionP50 = 0.0
        var seedSeconds = 0.0
    }

    static func run(settings: Settings) async throws -> String {
        let logger = Logger(label: "bench")
        var rows: [(String, Figures)] = []
        for backend in ["SQLite", "PostgreSQL"] {
            let place: String
            if backend == "SQLite" {
                place = try TestEnvironment.temporaryDirectory("bench-storage")
            } else {
                place = try await PostgresServer.shared.database("benchstorage")
            }
            func open(_ gateway: String) async throws -> GatewayDatabase {
                var database = try await GatewayDatabase.open(
                    url: backend == "SQLite" ? nil : try DatabaseURL(place),
                    directory: backend == "SQLite" ? place : nil,
                    logger: logger
                )
                database.gatewayID = gateway
                try await database.migrate()
                return database
            }
            let gatewayKeys = [IdentityKey.generate(), IdentityKey.generate()]
            let first = try await open(gatewayKeys[0].nodeID.rawValue)
            let second = try await open(gatewayKeys[1].nodeID.rawValue)
            FileHandle.standardError.write(Data("storage: \(backend): seeding \(settings.accounts) accounts and \(settings.nodes) nodes\n".utf8))
            let seedStart = ContinuousClock.now
            let population = try await seed(first, settings: settings)
            var figures = Figures(seedSeconds: (ContinuousClock.now - seedStart).seconds)

            FileHandle.standardError.write(Data("storage: \(backend): \(settings.requests) sequential requests\n".utf8))
            var latencies: [Double] = []
            let sequential = try (0..<settings.requests).map { try prepare($0, key: gatewayKeys[0], population: population) }
            let cpuBefore = cpuSeconds(includingPostgres: backend == "PostgreSQL")
            for prepared in sequential {
                let started = ContinuousClock.now
                try await request(prepared, on: first, key: gatewayKeys[0])
                latencies.append((ContinuousClock.now - started).seconds * 1000)
            }
            figures.cpuPerRequest = (cpuSeconds(includingPostgres: backend == "PostgreSQL") - cpuBefore) / Double(settings.requests) * 1e6
            figures.p50 = percentile(latencies, 50)
            figures.p99 = percentile(latencies, 99)

            FileHandle.standardError.write(Data("storage: \(backend): \(settings.concurrency) at once, one gateway then two\n".utf8))
            let one = try (0..<settings.requests).map { try prepare($0 + settings.requests, key: gatewayKeys[0], population: population) }
            figures.oneGatewayRate = try await rate(settings: settings) { index in
                try await request(one[index], on: first, key: gatewayKeys[0])
            }
            let two = try (0..<settings.requests).map { try prepare($0 + 2 * settings.requests, key: gatewayKeys[$0 % 2], population: population) }
            figures.twoGatewayRate = try await rate(settings: settings) { index in
                try await request(two[index], on: index % 2 == 0 ? first : second, key: gatewayKeys[index % 2])
            }

            var admissions: [Double] = []
            for _ in 0..<500 {
                let node = population.nodes.randomElement()!
                let started = ContinuousClock.now
                _ = try await first.isMember(node)
                _ = try await first.isRevoked(device: node)
                admissions.append((ContinuousClock.now - started).seconds * 1000)
            }
            figures.admissionP50 = percentile(admissions, 50)
            await first.close()
            await second.close()
            rows.append((backend, figures))
        }
        return report(rows, settings: settings)
    }

    struct Population {
        var accounts: [NodeID]
        var nodes: [NodeID]
        var nodeKey: IdentityKey
    }

    /// Fills the tables a large network has: standing, quota buckets and activity per account; members and devices per
    /// node; a directory of ten gateways. Rows are written 500 to a statement.
    static func seed(_ database: GatewayDatabase, settings: Settings) async throws -> Population {
        let now = Date().timeIntervalSince1970
        let accounts = (0..<settings.accounts).map { NodeID(publicKey: Data(SHA256Bytes.of("account-\($0)"))) }
        let nodes = (0..<settings.nodes).map { NodeID(publicKey: Data(SHA256Bytes.of("node-\($0)"))) }
        for batch in stride(from: 0, to: accounts.count, by: 500) {
            let slice = accounts[batch..<min(batch + 500, accounts.count)]
            try await database.store.write { session in
                let marks = Array(repeating: "(?, ?, ?, ?)", count: slice.count).joined(separator: ", ")
                try session.execute(
                    "INSERT INTO standing (account, contributed, consumed, updated_at) VALUES \(marks)",
                    slice.flatMap { [$0.rawValue, Double.random(in: 0...50_000), Double.random(in: 0...50_000), now] as [any SQLBindable] }
                )
                try session.execute(
                    "INSERT INTO quota_buckets (key, level, updated_at) VALUES \(Array(repeating: "(?, ?, ?)", count: slice.count).joined(separator: ", "))",
                    slice.flatMap { ["account:\($0.rawValue)", 20_000.0, now] as [any SQLBindable] }
                )
                try session.execute(
                    "INSERT INTO account_activity (account, hour, consumed, contributed) VALUES \(marks)",
                    slice.flatMap { [$0.rawValue, Int64(now) / 3600 * 3600, Int64(100), Int64(100)] as [any SQLBindable] }
                )
            }
        }
        for batch in stride(from: 0, to: nodes.count, by: 500) {
            let slice = nodes[batch..<min(batch + 500, nodes.count)]
            try await database.store.write { session in
                try session.execute(
                    "INSERT INTO members (node_id, invite_id, joined_at) VALUES \(Array(repeating: "(?, NULL, ?)", count: slice.count).joined(separator: ", "))",
                    slice.flatMap { [$0.rawValue, Date()] as [any SQLBindable] }
                )
                try session.execute(
                    "INSERT INTO devices (device_id, account, name, last_seen) VALUES \(Array(repeating: "(?, ?, ?, ?)", count: slice.count).joined(separator: ", "))",
                    slice.enumerated().flatMap { offset, node in
                        [node.rawValue, accounts[(batch + offset) % accounts.count].rawValue, "node", Date()] as [any SQLBindable]
                    }
                )
            }
        }
        try await database.store.write { session in
            for index in 0..<10 {
                try session.execute(
                    "INSERT INTO gateways (id, network, mesh, models, nodes, heartbeat_at, started_at) VALUES (?, 'bench', ?, 'm', ?, ?, ?)",
                    "gateway-\(index)",
                    "gw\(index):7070",
                    settings.nodes / 10,
                    now,
                    now
                )
            }
        }
        return Population(accounts: accounts, nodes: nodes, nodeKey: IdentityKey.generate())
    }

    /// What a node hands the gateway for one request: its usage and its signed receipt (made before the clock
    /// starts: signing is the node's work, not the database's).
    struct Prepared: Sendable {
        var usage: UsageRecord
        var settlement: ReceiptSettlement
        var account: NodeID
    }

    static func prepare(_ index: Int, key: IdentityKey, population: Population) throws -> Prepared {
        let account = population.accounts.randomElement()!
        let id = "bench-\(key.nodeID.short)-\(index)-\(UUID().uuidString.prefix(8))"
        let usage = UsageRecord(
            requestID: id,
            route: "/v1/chat/completions",
            model: DefaultModel.id.rawValue,
            nodeID: population.nodeKey.nodeID.rawValue,
            promptTokens: 20,
            completionTokens: 100,
            status: "ok",
            startedAt: Date(),
            firstByteMilliseconds: 30,
            durationMilliseconds: 900,
            consumer: "user:\(account.rawValue)",
            account: account.rawValue
        )
        let receipt = Receipt(
            requestID: id,
            gateway: key.nodeID,
            node: population.nodeKey.nodeID,
            account: account,
            consumer: "user:\(account.rawValue)",
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            promptTokens: 20,
            completionTokens: 100,
            maxTokens: 128,
            startedAt: 1,
            finishedAt: 2,
            outcome: .ok
        )
        return Prepared(
            usage: usage,
            settlement: .credit(receipt, signed: try receipt.signed(by: population.nodeKey).encoded()),
            account: account
        )
    }

    /// One served, credited request's database work, as the gateway does it (its countersignature of the ledger
    /// entry included: it is made inside the transaction).
    static func request(_ prepared: Prepared, on database: GatewayDatabase, key: IdentityKey) async throws {
        let account = prepared.account
        let bucket = "account:\(account.rawValue)"
        _ = try await database.balance(of: account, reciprocity: Reciprocity())
        _ = try await database.reserveQuota(bucket, tokens: 300, perHour: 20_000, now: Date().timeIntervalSince1970)
        database.markInFlight(prepared.usage, logger: Logger(label: "bench"))
        try await database.record(
            prepared.usage,
            settling: prepared.settlement,
            quota: QuotaCharge(key: bucket, tokensPerHour: 20_000, tokens: 120, reserved: 300),
            gateway: key,
            accounts: { _ in account }
        )
    }

    /// Requests per second with `settings.concurrency` in flight, for `settings.requests` requests.
    static func rate(settings: Settings, _ work: @escaping @Sendable (Int) async throws -> Void) async throws -> Double {
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            for _ in 0..<settings.concurrency {
                let index = next
                next += 1
                group.addTask { try await work(index) }
            }
            while try await group.next() != nil {
                if next < settings.requests {
                    let index = next
                    next += 1
                    group.addTask { try await work(index) }
                }
            }
        }
        return Double(settings.requests) / (ContinuousClock.now - started).seconds
    }

    /// CPU seconds used so far by this process and, when asked, by every `postgres` process.
    static func cpuSeconds(includingPostgres: Bool) -> Double {
        let postgres = includingPostgres ? postgresPIDs() : []
        return ([getpid()] + postgres).reduce(0) { $0 + hearth_bench.cpuSeconds(of: $1) }
    }

    static func report(_ rows: [(String, Figures)], settings: Settings) -> String {
        var text = """

            ## Storage: the database's part of a request (`--parts storage`)

            Tables seeded with \(settings.accounts) accounts (standing, quota bucket, activity) and \(settings.nodes) nodes (members,
            certified devices) and a directory of 10 gateways. One request = what the gateway does against its database for
            a served, credited request by a logged-in account: read standing, reserve from the quota bucket, note it in flight,
            then record usage + quota settlement + standing (consumer and contributor) + the device's revocation check + ledger entry through the group
            commit (with the gateway's countersignature; the node's receipts are signed before the clock starts).
            \(settings.requests) sequential requests for latency and CPU; then \(settings.requests) with \(settings.concurrency) at once through one
            gateway's connections, and split over two gateways (two connection pools, two ledger chains). Both "gateways"
            are in this process, on the same 2 cores as the database server: two gateways here share the cores one had, so
            the two-gateway figure shows contention in the database, not added capacity.

            | Database | p50 per request | p99 | CPU per request | 1 gateway, \(settings.concurrency) at once | 2 gateways | 2 / 1 | admission check p50 | seeding |
            |---|---|---|---|---|---|---|---|---|

            """
        for (name, figures) in rows {
            text +=
                "| \(name) | \(format(figures.p50)) ms | \(format(figures.p99)) ms | \(Int(figures.cpuPerRequest)) µs | "
                + "\(Int(figures.oneGatewayRate)) req/s | \(Int(figures.twoGatewayRate)) req/s | "
                + "\(format(figures.twoGatewayRate / max(figures.oneGatewayRate, 1))) | \(format(figures.admissionP50)) ms | "
                + "\(Int(figures.seedSeconds)) s |\n"
        }
        if rows.count == 2 {
            text += "\nPostgreSQL / SQLite: p50 latency \(format(rows[1].1.p50 / rows[0].1.p50))×, CPU per request "
            text += "\(format(rows[1].1.cpuPerRequest / max(rows[0].1.cpuPerRequest, 1)))× (PostgreSQL's includes its server's processes).\n"
        }
        return text
    }

    static func format(_ value: Double) -> String { String(format: "%.2f", value) }
}

/// SHA-256 of a string, for stable generated ids.
enum SHA256Bytes {
    static func of(_ text: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(text.utf8)))
    }
}
