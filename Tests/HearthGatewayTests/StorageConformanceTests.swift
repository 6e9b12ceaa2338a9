import Crypto
import Foundation
import HearthTesting
import Logging
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthStore

/// What the gateway asks of its database, asked of SQLite and PostgreSQL alike: the same answers, the same refusals,
/// and, where two gateways share one, no count lost or made twice. One case at a time: each makes a database, and
/// thirty at once (a file copy each on PostgreSQL) would slow the rest of the suite for nothing.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct StorageConformanceTests {
    let gatewayKey = IdentityKey.generate()
    let nodeKey = IdentityKey.generate()

    func usage(_ id: String, account: String? = nil, tokens: (Int, Int) = (3, 4), status: String = "ok", at time: Date = Date()) -> UsageRecord {
        UsageRecord(
            requestID: id,
            route: "/v1/chat/completions",
            model: DefaultModel.id.rawValue,
            nodeID: nodeKey.nodeID.rawValue,
            promptTokens: tokens.0,
            completionTokens: tokens.1,
            status: status,
            startedAt: time,
            firstByteMilliseconds: 10,
            durationMilliseconds: 20,
            consumer: account.map { "user:\($0)" } ?? "anonymous",
            account: account
        )
    }

    func credit(_ id: String, account: NodeID? = nil, tokens: (Int, Int) = (3, 4), gateway: IdentityKey? = nil) throws -> ReceiptSettlement {
        let receipt = Receipt(
            requestID: id,
            gateway: (gateway ?? gatewayKey).nodeID,
            node: nodeKey.nodeID,
            account: account,
            consumer: "anonymous",
            model: DefaultModel.id,
            modelSHA256: DefaultModel.sha256,
            promptTokens: tokens.0,
            completionTokens: tokens.1,
            maxTokens: 8,
            startedAt: 1,
            finishedAt: 2,
            outcome: .ok
        )
        return .credit(receipt, signed: try receipt.signed(by: nodeKey).encoded())
    }

    /// Each entry commits to the hash of the one before it, from 32 zero bytes.
    func expectWholeChain(_ rows: [LedgerRow], count: Int, signer: NodeID? = nil) throws {
        #expect(rows.map(\.seq) == Array(1...Int64(count)))
        var previous = Data(count: 32)
        for row in rows {
            let message = try COSESign1(decoding: Array(row.entry))
            #expect(message.keyID.map { NodeID(publicKey: Data($0)) } == (signer ?? gatewayKey.nodeID), "entry \(row.seq)'s signer")
            #expect(row.chain == (signer ?? gatewayKey.nodeID).rawValue)
            let entry = try LedgerEntry(cbor: try CBOR(decoding: message.payload))
            #expect(entry.previousHash == previous, "entry \(row.seq)")
            #expect(entry.seq == row.seq)
            previous = row.hash
        }
    }

    @Test(arguments: StorageBackend.allCases)
    func migrationsAreRecordedByNameAndRunOnce(_ backend: StorageBackend) async throws {
        let (database, reopen) = try await backend.open("migrations")
        try await database.migrate()
        let again = try await reopen("gateway-b")
        try await again.migrate()
        let table = backend == .sqlite ? "grdb_migrations" : "hearth_migrations"
        let column = backend == .sqlite ? "identifier" : "name"
        let names = try await database.store.read { session in
            try session.query("SELECT \(column) AS name FROM \(table)").map { try $0.string("name") }
        }
        #expect(names.sorted() == GatewayDatabase.migrations.map(\.name).sorted())
    }

    @Test(arguments: StorageBackend.allCases)
    func usageRowsAndActivityBuckets(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("usage")
        let base = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 60).rounded(.down) * 60 - 600)
        try await database.record(usage("a", tokens: (5, 7), at: base))
        try await database.record(usage("b", tokens: (1, 2), status: "upstream_error", at: base.addingTimeInterval(10)))
        try await database.record(usage("c", tokens: (4, 4), status: "client_closed", at: base.addingTimeInterval(70)))
        await #expect(throws: (any Error).self, "a request id is stored once") { try await database.record(usage("a")) }

        let recent = try await database.recentUsage(limit: 10)
        #expect(recent.map(\.requestID) == ["c", "b", "a"])
        #expect(recent.last == usage("a", tokens: (5, 7), at: base), "every field comes back as written (dates to the millisecond)")

        let buckets = try await database.activity(since: base.addingTimeInterval(-1), bucketSeconds: 60)
        #expect(buckets.map(\.start) == [Int64(base.timeIntervalSince1970), Int64(base.timeIntervalSince1970) + 60])
        #expect(buckets.map(\.requests) == [2, 1])
        #expect(buckets.map(\.failed) == [1, 0], "client_closed is not a failure")
        #expect(buckets.map(\.promptTokens) == [6, 4])
        #expect(buckets.map(\.completionTokens) == [9, 4])
        #expect(buckets.first?.firstTokenMilliseconds == 10)
    }

    @Test(arguments: StorageBackend.allCases)
    func apiKeysAreFoundByHashAndRevokedByTheirOwnerOnly(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("keys")
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        let key = APIKeyRecord(id: "k1", owner: "alice", name: "laptop", secretDigest: "d1", createdAt: time, revokedAt: nil)
        try await database.insert(key)
        try await database.insert(APIKeyRecord(id: "k2", owner: "alice", name: "phone", secretDigest: "d2", createdAt: time + 5, revokedAt: nil))
        await #expect(throws: (any Error).self, "a secret's hash is unique") {
            try await database.insert(APIKeyRecord(id: "k3", owner: "bob", name: "x", secretDigest: "d1", createdAt: time, revokedAt: nil))
        }
        #expect(try await database.apiKey(secretDigest: "d1") == key)
        #expect(try await database.apiKey(secretDigest: "nope") == nil)
        #expect(try await database.apiKeys(owner: "alice").map(\.id) == ["k2", "k1"])
        #expect(try await database.revokeAPIKey(id: "k1", owner: "bob", at: time) == false)
        #expect(try await database.revokeAPIKey(id: "k1", owner: "alice", at: time + 60) == true)
        #expect(try await database.revokeAPIKey(id: "k1", owner: "alice", at: time + 120) == false, "revoked once")
        #expect(try await database.apiKey(secretDigest: "d1")?.revokedAt == time + 60)
    }

    @Test(arguments: StorageBackend.allCases)
    func invitesAreSpentOncePerNodeAndRefusedWithTheirReason(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("invites")
        let now = Date()
        try await database.insert(InviteRecord(id: "twice", roles: "node", maxUses: 2, expiresAt: now + 3600))
        try await database.insert(InviteRecord(id: "old", roles: "node", maxUses: 2, expiresAt: now - 1))
        try await database.insert(InviteRecord(id: "gone", roles: "node", maxUses: 2, expiresAt: now + 3600))
        #expect(try await database.revokeInvite("gone") == true)
        #expect(try await database.revokeInvite("gone") == false)
        let nodes = (0..<3).map { _ in IdentityKey.generate().nodeID }
        try await database.redeemInvite("twice", for: nodes[0])
        try await database.redeemInvite("twice", for: nodes[0])  // the same node again spends nothing
        try await database.redeemInvite("twice", for: nodes[1])
        await #expect(throws: InviteRedemptionError.usedUp) { try await database.redeemInvite("twice", for: nodes[2]) }
        await #expect(throws: InviteRedemptionError.expired) { try await database.redeemInvite("old", for: nodes[2]) }
        await #expect(throws: InviteRedemptionError.revoked) { try await database.redeemInvite("gone", for: nodes[2]) }
        await #expect(throws: InviteRedemptionError.unknown) { try await database.redeemInvite("nope", for: nodes[2]) }
        #expect(try await database.isMember(nodes[0]))
        #expect(try await database.isMember(nodes[1]))
        #expect(try await database.isMember(nodes[2]) == false)
        let listed = try await database.invites()
        #expect(Dictionary(uniqueKeysWithValues: listed.map { ($0.id, $0.uses) }) == ["twice": 2, "old": 0, "gone": 0])
        try await database.addMember(nodes[2])
        try await database.addMember(nodes[2])
        #expect(try await database.isMember(nodes[2]))
    }

    @Test(arguments: StorageBackend.allCases)
    func devicesAreRecordedAndRevokedByTheirAccountOnly(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("devices", gateway: gatewayKey.nodeID.rawValue)
        let account = IdentityKey.generate()
        let other = IdentityKey.generate()
        let device = nodeKey
        let certificate = try DeviceCertificate.issue(account: account, deviceKey: device.publicKey, deviceName: "attic", validFor: 3600)
        try await database.sawDevice(certificate)
        try await database.sawDevice(certificate)
        #expect(try await database.devices(of: account.nodeID).map(\.name) == ["attic"])
        #expect(try await database.isRevoked(device: device.nodeID) == false)
        #expect(try await database.revoke(device: device.nodeID, by: other.nodeID) == false)
        #expect(try await database.revoke(device: device.nodeID, by: account.nodeID) == true)
        #expect(try await database.isRevoked(device: device.nodeID))

        // Its receipts earn nothing from then on: the credit is refused in the record's own transaction.
        let row = try await database.record(usage("after-revocation"), settling: try credit("after-revocation"), gateway: gatewayKey)
        #expect(row == nil)
        #expect(try await database.ledger().isEmpty)
        #expect(try await database.receiptRejections().map(\.reason) == ["device_revoked"])
        #expect(try await database.recentUsage().map(\.requestID) == ["after-revocation"], "the request itself is metered")
    }

    @Test(arguments: StorageBackend.allCases)
    func theLedgerChainsCreditsChargesStandingAndRefusesASecondCredit(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("ledger", gateway: gatewayKey.nodeID.rawValue)
        let account = IdentityKey.generate().nodeID
        let owner = IdentityKey.generate().nodeID
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let accounts: @Sendable (NodeID) -> NodeID? = { _ in owner }
        for index in 1...3 {
            let row = try await database.record(
                usage("r\(index)", account: account.rawValue),
                settling: try credit("r\(index)", account: owner),
                gateway: gatewayKey,
                accounts: accounts,
                now: now
            )
            #expect(row?.seq == Int64(index))
        }
        await #expect(throws: (any Error).self, "a request is credited once") {
            try await database.record(usage("r1-again"), settling: try credit("r1"), gateway: gatewayKey, now: now)
        }
        #expect(try await database.recentUsage().count == 3, "the refused credit's usage row was rolled back with it")
        try await database.record(
            usage("refused"),
            settling: .refuse(reason: "bad_signature", detail: "test", signed: [1, 2, 3]),
            gateway: gatewayKey,
            now: now
        )
        try expectWholeChain(try await database.ledger(), count: 3)
        #expect(try await database.ledger(after: 2).map(\.seq) == [3])
        #expect(try await database.ledgerHead().seq == 3)
        #expect(try await database.refusedReceiptCount(of: nodeKey.nodeID) == 1)
        #expect(try await database.receiptRejections().map(\.reason) == ["bad_signature"])

        let reciprocity = Reciprocity()
        let charged = try await database.balance(of: account, reciprocity: reciprocity, now: now)
        #expect(charged.consumed == 21 && charged.contributed == 0)
        let earned = try await database.balance(of: owner, reciprocity: reciprocity, now: now)
        #expect(earned.contributed == 21 && earned.consumed == 0)
        let history = try await database.accountActivity(of: owner.rawValue, since: now - 7200, bucketSeconds: 3600)
        #expect(history.map(\.contributedTokens) == [21])

        // The database decays a balance as `Reciprocity.update` does: half of it a half-life later, plus what comes
        // then; a record that arrives late (stamped before the last update) is added without decay or going back.
        let later = now + reciprocity.halfLife
        try await database.record(usage("r4", account: account.rawValue), settling: .none, gateway: gatewayKey, now: later)
        try await database.record(usage("r5", account: account.rawValue), settling: .none, gateway: gatewayKey, now: later - 100)
        let expected = reciprocity.update(
            reciprocity.update(
                Reciprocity.Balance(consumed: 21, updatedAt: now.timeIntervalSince1970),
                consumed: 7,
                now: later.timeIntervalSince1970
            ),
            consumed: 7,
            now: later.timeIntervalSince1970 - 100
        )
        let decayed = try await database.balance(of: account, reciprocity: reciprocity, now: later)
        #expect(abs(decayed.consumed - 24.5) < 1e-9 && abs(expected.consumed - 24.5) < 1e-9, "\(decayed) \(expected)")
        #expect(decayed.updatedAt == later.timeIntervalSince1970)
    }

    @Test(arguments: StorageBackend.allCases)
    func eachGatewayRecoversOnlyItsOwnRequestsInFlight(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("in-flight", gateway: "gateway-a")
        let second = try await reopen("gateway-b")
        let logger = Logger(label: "test")
        first.markInFlight(usage("a1"), logger: logger)
        first.markInFlight(usage("a2"), logger: logger)
        second.markInFlight(usage("b1"), logger: logger)
        // A finished request's row removes its note in the same transaction.
        try await second.record(usage("b2"), settling: .none, gateway: gatewayKey)
        _ = try await eventually("the notes to be written") {
            try await first.store.read { try $0.queryOne("SELECT COUNT(*) AS notes FROM in_flight")?.int("notes") } == 3 ? true : nil
        }
        #expect(try await first.recoverCutOffRequests() == 2)
        let cut = try await first.recentUsage().filter { $0.status == "cut_off" }.map(\.requestID).sorted()
        #expect(cut == ["a1", "a2"], "gateway-b's request is still in flight, not cut off")
        #expect(try await second.recoverCutOffRequests() == 1)
        #expect(try await first.recoverCutOffRequests() == 0)
    }

    @Test(arguments: StorageBackend.allCases)
    func poolsAndSpotChecksComeBackAsStored(_ backend: StorageBackend) async throws {
        let (database, reopen) = try await backend.open("pools")
        let time = Date(timeIntervalSince1970: 1_800_000_000)
        try await database.savePool(PoolRecord(id: "p1", model: "m", nodes: nil, automatic: true, createdAt: time))
        try await database.savePool(PoolRecord(id: "p2", model: "m2", nodes: "a,b", automatic: false, createdAt: time + 1))
        try await database.savePool(PoolRecord(id: "p1", model: "m", nodes: "c", automatic: false, createdAt: time))
        #expect(
            try await database.pools() == [
                PoolRecord(id: "p1", model: "m", nodes: "c", automatic: false, createdAt: time),
                PoolRecord(id: "p2", model: "m2", nodes: "a,b", automatic: false, createdAt: time + 1),
            ]
        )
        try await database.deletePool(id: "p1")
        #expect(try await database.pools().map(\.id) == ["p2"])
        // Another gateway on the same database restores only its own pools.
        let other = try await reopen("gateway-b")
        #expect(try await other.pools().isEmpty)
        try await other.savePool(PoolRecord(id: "p3", model: "m", nodes: nil, automatic: true, createdAt: time + 2))
        #expect(try await other.pools().map(\.id) == ["p3"])
        #expect(try await database.pools().map(\.id) == ["p2"])

        let check = SpotCheckRecord(
            requestID: "r",
            nodeID: nodeKey.nodeID.rawValue,
            checkerID: "c",
            model: "m",
            tokens: 12,
            meanLogprob: -1.25,
            outsideTopK: 0.5,
            result: "pass",
            reason: nil,
            createdAt: time
        )
        try await database.record(check)
        try await database.record(
            SpotCheckRecord(
                requestID: "r2",
                nodeID: "other",
                checkerID: "c",
                model: "m",
                tokens: 3,
                meanLogprob: -9,
                outsideTopK: 1,
                result: "fail",
                reason: "unlikely",
                createdAt: time
            )
        )
        #expect(try await database.spotChecks(of: nodeKey.nodeID) == [check])
        #expect(try await database.spotChecks().map(\.requestID) == ["r2", "r"])
    }

    @Test(arguments: StorageBackend.allCases)
    func aLoginFromOneGatewayWorksOnAnotherAndANonceIsSpentOnce(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("logins")
        let second = try await reopen("gateway-b")
        let clock = TestClock()
        let authA = AuthService(database: first, challengeTTL: .seconds(60), tokenTTL: .seconds(3600), now: { clock.now })
        let authB = AuthService(database: second, challengeTTL: .seconds(60), tokenTTL: .seconds(3600), now: { clock.now })
        let user = IdentityKey.generate()
        let issued = try await authA.challenge(publicKey: user.publicKey)
        let signature = try user.sign(LoginProtocol.message(nonce: issued.nonce))
        let login = try await authB.verify(publicKey: user.publicKey, nonce: issued.nonce, signature: signature)
        #expect(login.user == user.nodeID)
        await #expect(throws: APIFailure.self, "the nonce was spent on gateway B") {
            try await authA.verify(publicKey: user.publicKey, nonce: issued.nonce, signature: signature)
        }
        #expect(try await authA.caller(forBearer: login.token) == .user(user.nodeID))
        await #expect(throws: APIFailure.self) { try await authA.caller(forBearer: "ht_" + Hex.random(bytes: 32)) }

        let other = try await authA.challenge(publicKey: user.publicKey)
        let mallory = IdentityKey.generate()
        await #expect(throws: APIFailure.self, "a nonce issued to another key") {
            try await authB.verify(
                publicKey: mallory.publicKey,
                nonce: other.nonce,
                signature: try mallory.sign(LoginProtocol.message(nonce: other.nonce))
            )
        }
        let late = try await authA.challenge(publicKey: user.publicKey)
        clock.advance(by: 61)
        await #expect(throws: APIFailure.self, "an expired challenge") {
            try await authB.verify(publicKey: user.publicKey, nonce: late.nonce, signature: try user.sign(LoginProtocol.message(nonce: late.nonce)))
        }
        clock.advance(by: 3600)
        await #expect(throws: APIFailure.self, "an expired token") { try await authB.caller(forBearer: login.token) }
    }

    /// Two gateways charging one account at once: every charge counts (no read-then-write race), on either database.
    @Test(arguments: StorageBackend.allCases)
    func concurrentChargesFromTwoGatewaysAllCount(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("charges")
        let second = try await reopen("gateway-b")
        let account = IdentityKey.generate().nodeID
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let perGateway = 40
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<perGateway {
                for (name, database) in [("a", first), ("b", second)] {
                    group.addTask {
                        try await database.record(
                            usage("\(name)\(index)", account: account.rawValue, tokens: (1, 2)),
                            settling: .none,
                            gateway: gatewayKey,
                            now: now
                        )
                    }
                }
            }
            try await group.waitForAll()
        }
        let balance = try await first.balance(of: account, reciprocity: Reciprocity(), now: now)
        #expect(balance.consumed == Double(2 * perGateway * 3))
        let hours = try await second.accountActivity(of: account.rawValue, since: now - 3600, bucketSeconds: 3600)
        #expect(hours.map(\.consumedTokens) == [2 * perGateway * 3])
    }

    /// One caller's requests finishing on two gateways at once draw from one bucket, and the other gateway sees it.
    @Test(arguments: StorageBackend.allCases)
    func quotaChargesFromTwoGatewaysDrawOneBucket(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("quota")
        let second = try await reopen("gateway-b")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let reciprocity = Reciprocity(floorTokensPerHour: 1000)
        let caller = Caller.anonymous
        let decision = await QuotaBook(reciprocity: reciprocity, database: first).check(caller: caller, address: "192.0.2.7", now: now)
        #expect(decision.remaining == 1000 && decision.charge.key == "address:192.0.2.7")
        var charge = decision.charge
        charge.tokens = 10
        let perGateway = 30
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<perGateway {
                for (name, database) in [("a", first), ("b", second)] {
                    let finished = charge
                    group.addTask {
                        try await database.record(usage("q\(name)\(index)"), settling: .none, quota: finished, gateway: gatewayKey, now: now)
                    }
                }
            }
            try await group.waitForAll()
        }
        let seen = await QuotaBook(reciprocity: reciprocity, database: second).check(caller: caller, address: "192.0.2.7", now: now)
        #expect(seen.remaining == 1000 - 2 * perGateway * 10)
        // It refills at the hourly rate, on every gateway alike.
        let later = await QuotaBook(reciprocity: reciprocity, database: first).check(caller: caller, address: "192.0.2.7", now: now + 360)
        #expect(later.remaining == 1000 - 2 * perGateway * 10 + 100)
        // Another caller's bucket is untouched.
        #expect(await QuotaBook(reciprocity: reciprocity, database: second).check(caller: caller, address: "192.0.2.8", now: now).remaining == 1000)
    }

    /// Requests let in at once through two gateways reserve from one bucket: together they never take more than it
    /// holds, and what they did not use goes back when they are settled.
    @Test(arguments: StorageBackend.allCases)
    func concurrentAdmissionsThroughTwoGatewaysNeverOverspendABucket(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("reserve")
        // A SQLite database has one gateway, which holds its buckets in memory (`QuotaBuckets`): its requests race
        // through that one.
        let second = backend == .sqlite ? first : try await reopen("gateway-b")
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let reciprocity = Reciprocity(floorTokensPerHour: 1000)
        let books = [QuotaBook(reciprocity: reciprocity, database: first), QuotaBook(reciprocity: reciprocity, database: second)]
        // Sixty requests that may each cost 100 tokens, thirty through each gateway, all at once.
        let decisions = await withTaskGroup(of: QuotaBook.Decision.self) { group in
            for index in 0..<60 {
                group.addTask { await books[index % 2].admit(caller: .anonymous, address: "192.0.2.9", reserving: 100, now: now) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let admitted = decisions.filter(\.allowed)
        #expect(admitted.count == 10, "1,000 tokens hold ten reservations of 100, however they race")
        #expect(admitted.allSatisfy { $0.charge.reserved == 100 })
        let refused = try #require(decisions.first { !$0.allowed })
        #expect(refused.remaining == 0 && refused.retryAfterSeconds >= 1)
        // Each used 40: 60 of each reservation go back, on whichever gateway settles it.
        for (index, decision) in admitted.enumerated() {
            var charge = decision.charge
            charge.tokens = 40
            try await (index % 2 == 0 ? first : second).record(usage("s\(index)"), settling: .none, quota: charge, gateway: gatewayKey, now: now)
        }
        #expect(await books[1].check(caller: .anonymous, address: "192.0.2.9", now: now).remaining == 600)
        // A request that ends without cost gives its whole reservation back.
        let next = await books[0].admit(caller: .anonymous, address: "192.0.2.9", reserving: 100, now: now)
        #expect(next.allowed && next.remaining == 500)
        try await first.record(usage("s-failed"), settling: .none, quota: next.charge, gateway: gatewayKey, now: now)
        #expect(await books[0].check(caller: .anonymous, address: "192.0.2.9", now: now).remaining == 600)
    }

    @Test(arguments: StorageBackend.allCases)
    func theGatewayDirectoryListsLiveGatewaysOfOneNetwork(_ backend: StorageBackend) async throws {
        let (database, _) = try await backend.open("directory")
        func row(_ id: String, network: String = "net", at time: Double, started: Double = 0) -> GatewayRecord {
            GatewayRecord(id: id, network: network, mesh: "\(id):7070", models: ["m1", "m2"], nodes: 2, heartbeatAt: time, startedAt: started)
        }
        try await database.heartbeat(row("b", at: 100, started: 20))
        try await database.heartbeat(row("a", at: 100, started: 10))
        try await database.heartbeat(row("old", at: 50))
        try await database.heartbeat(row("other", network: "elsewhere", at: 100))
        #expect(try await database.liveGateways(network: "net", since: 90).map(\.id) == ["a", "b"], "live ones of the network, oldest first")
        try await database.heartbeat(row("old", at: 120))
        #expect(try await database.liveGateways(network: "net", since: 90).map(\.id) == ["old", "a", "b"])
        #expect(try await database.liveGateways(network: "net", since: 90).last == row("b", at: 100, started: 20))
        try await database.removeGateway("a")
        #expect(try await database.liveGateways(network: "net", since: 0).map(\.id) == ["old", "b"])
    }

    /// An invite's last uses, raced for by nodes joining through two gateways: exactly its uses are granted.
    @Test(arguments: StorageBackend.allCases)
    func anInvitesUsesAreCountedOnceAcrossGateways(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("invite-race")
        let second = try await reopen("gateway-b")
        try await first.insert(InviteRecord(id: "five", roles: "node", maxUses: 5, expiresAt: Date() + 3600))
        let granted = await withTaskGroup(of: Bool.self) { group in
            for index in 0..<24 {
                let database = index.isMultiple(of: 2) ? first : second
                group.addTask { (try? await database.redeemInvite("five", for: IdentityKey.generate().nodeID)) != nil }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(granted == 5)
        #expect(try await second.invites().first?.uses == 5)
    }

    /// Credits from two processes with the same gateway key at once (a restart overlapping the old process): one
    /// unbroken chain, no sequence number taken twice, nothing lost.
    @Test(arguments: StorageBackend.allCases)
    func concurrentCreditsFromTwoGatewaysKeepTheChainWhole(_ backend: StorageBackend) async throws {
        let (first, reopen) = try await backend.open("ledger-race", gateway: gatewayKey.nodeID.rawValue)
        let second = try await reopen("gateway-b")
        let perGateway = 25
        let settlements = try (0..<(2 * perGateway)).map { try credit("c\($0)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<(2 * perGateway) {
                let database = index < perGateway ? first : second
                group.addTask { try await database.record(usage("c\(index)"), settling: settlements[index], gateway: gatewayKey) }
            }
            try await group.waitForAll()
        }
        try expectWholeChain(try await first.ledger(limit: 1000), count: 2 * perGateway)
    }
}
