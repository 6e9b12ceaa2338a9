import Foundation
import Testing

@testable import HearthCore

struct ReciprocityTests {
    let rules = Reciprocity(floorTokensPerHour: 1000, ceilingTokensPerHour: 5000, halfLife: 100)

    @Test func valuesHalveEveryHalfLife() {
        #expect(rules.decay(over: 0) == 1)
        #expect(abs(rules.decay(over: 100) - 0.5) < 1e-12)
        #expect(abs(rules.decay(over: 300) - 0.125) < 1e-12)
        let balance = rules.update(Reciprocity.Balance(), contributed: 800, consumed: 200, now: 1000)
        let later = rules.update(balance, consumed: 10, now: 1100)
        #expect(abs(later.contributed - 400) < 1e-9)
        #expect(abs(later.consumed - 110) < 1e-9)
        #expect(later.updatedAt == 1100)
    }

    @Test func quotaStartsAtTheFloorGrowsWithStandingAndStopsAtTheCeiling() {
        #expect(rules.quota(standing: 0) == 1000)
        #expect(rules.quota(standing: -50_000) == 1000)  // consuming more never goes below the floor
        #expect(rules.quota(standing: 2500) == 3500)
        #expect(rules.quota(standing: 1e9) == 5000)
        var previous = 0.0
        for standing in stride(from: -1000.0, through: 10_000, by: 250) {
            let quota = rules.quota(standing: standing)
            #expect(quota >= previous)
            previous = quota
        }
    }
}
