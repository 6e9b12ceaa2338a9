import Crypto
import Foundation
import HearthTesting
import Logging
import Synchronization
import Testing

@testable import HearthCore
@testable import HearthGateway
@testable import HearthStore

/// Gateways sharing a database each keep their own ledger chain.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LedgerChainTests {
    @Test(arguments: StorageBackend.allCases)
    func twoGatewaysKeepTwoWholeChainsAndCreditARequestOnce(_ backend: StorageBackend) async throws {
        let base = StorageConformanceTests()
        let (first, reopen) = try await backend.open("chains", gateway: base.gatewayKey.nodeID.rawValue)
        let otherKey = IdentityKey.generate()
        let second = try await reopen(otherKey.nodeID.rawValue)
        let count = 12
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                group.addTask { try await first.record(base.usage("a\(index)"), settling: try base.credit("a\(index)"), gateway: base.gatewayKey) }
                group.addTask {
                    try await second.record(base.usage("b\(index)"), settling: try base.credit("b\(index)", gateway: otherKey), gateway: otherKey)
                }
            }
            try await group.waitForAll()
        }
        try base.expectWholeChain(try await first.ledger(limit: 1000), count: count, signer: base.gatewayKey.nodeID)
        try base.expectWholeChain(try await second.ledger(limit: 1000), count: count, signer: otherKey.nodeID)
        #expect(try await first.ledger(chain: otherKey.nodeID.rawValue).count == count, "any gateway reads every chain")
        let chains = try await second.ledgerChains()
        #expect(Set(chains.map(\.chain)) == [base.gatewayKey.nodeID.rawValue, otherKey.nodeID.rawValue])
        #expect(chains.map(\.entries) == [Int64(count), Int64(count)])
        #expect(try await first.ledgerHead(chain: otherKey.nodeID.rawValue).seq == Int64(count))

        // The same request credited through the other gateway (a receipt replayed there) is refused.
        await #expect(throws: (any Error).self) {
            try await second.record(base.usage("a0-again"), settling: try base.credit("a0", gateway: otherKey), gateway: otherKey)
        }
        #expect(try await second.ledger(limit: 1000).count == count)
    }

    /// A ledger written before chains had names is given to the gateway whose key signed it.
    @Test(arguments: StorageBackend.allCases)
    func entriesFromBeforeChainsGoToTheGatewayThatSignedThem(_ backend: StorageBackend) async throws {
        let base = StorageConformanceTests()
        let place: String
        switch backend {
        case .sqlite: place = try TestEnvironment.temporaryDirectory("store-unnamed")
        case .postgres: place = try await PostgresServer.shared.database("unnamed")
        }
        let database = try await backend.database(at: place)
        let before = GatewayDatabase.migrations.prefix { $0.name != GatewayDatabase.ledgerChainsMigration.name }
        try await database.store.migrate(Array(before))
        guard case .credit(_, let signed) = try base.credit("old") else { return }
        let entry = try LedgerEntry(seq: 1, previousHash: Data(count: 32), receipt: signed, creditedAt: Date(), credits: nil).signed(
            by: base.gatewayKey
        )
        _ = try await database.store.write { session in
            try session.execute(
                """
                INSERT INTO ledger (seq, request_id, node_id, consumer, model, prompt_tokens, completion_tokens, entry, hash, created_at)
                VALUES (1, 'old', 'n', 'anonymous', 'm', 3, 4, ?, ?, ?)
                """,
                Data(entry),
                Data(SHA256.hash(data: entry)),
                Date()
            )
        }
        try await database.migrate()
        #expect(try await database.ledger().map(\.chain) == [""])
        try await database.nameUnnamedChain()
        let rows = try await database.ledger(chain: base.gatewayKey.nodeID.rawValue)
        #expect(rows.map(\.requestID) == ["old"])
        // The next entry of that gateway continues the same chain.
        let next = try await database.record(base.usage("new"), settling: try base.credit("new"), gateway: base.gatewayKey)
        #expect(next?.seq == 2)
        try base.expectWholeChain(try await database.ledger(chain: base.gatewayKey.nodeID.rawValue), count: 2, signer: base.gatewayKey.nodeID)
    }
}
