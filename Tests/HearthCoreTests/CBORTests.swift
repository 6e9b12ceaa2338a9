import Foundation
import Testing

@testable import HearthCore

func hex(_ text: String) -> [UInt8] { Array(Hex.decode(text)!) }

struct CBORTests {
    /// RFC 8949 Appendix A, the items this implementation supports.
    @Test func encodesTheRFCExamples() throws {
        let examples: [(CBOR, String)] = [
            (.unsigned(0), "00"), (.unsigned(23), "17"), (.unsigned(24), "1818"), (.unsigned(100), "1864"),
            (.unsigned(1000), "1903e8"), (.unsigned(1_000_000), "1a000f4240"), (.unsigned(1_000_000_000_000), "1b000000e8d4a51000"),
            (.unsigned(UInt64.max), "1bffffffffffffffff"), (.negative(UInt64.max), "3bffffffffffffffff"),
            (.int(-1), "20"), (.int(-10), "29"), (.int(-100), "3863"), (.int(-1000), "3903e7"),
            (.bool(false), "f4"), (.bool(true), "f5"), (.null, "f6"),
            (.tagged(1, .unsigned(1_363_896_240)), "c11a514b67b0"),
            (.bytes([]), "40"), (.bytes([1, 2, 3, 4]), "4401020304"),
            (.text(""), "60"), (.text("a"), "6161"), (.text("IETF"), "6449455446"), (.text("\"\\"), "62225c"),
            (.text("\u{00fc}"), "62c3bc"), (.text("\u{6c34}"), "63e6b0b4"), (.text("\u{10151}"), "64f0908591"),
            (.array([]), "80"), (.array([.int(1), .int(2), .int(3)]), "83010203"),
            (.array([.int(1), .array([.int(2), .int(3)]), .array([.int(4), .int(5)])]), "8301820203820405"),
            (.map([]), "a0"), (.map([(.int(1), .int(2)), (.int(3), .int(4))]), "a201020304"),
            (.map([(.text("a"), .int(1)), (.text("b"), .array([.int(2), .int(3)]))]), "a26161016162820203"),
        ]
        for (item, expected) in examples {
            #expect(Hex.encode(try item.encoded()) == expected, "\(item)")
            #expect(try CBOR(decoding: hex(expected)) == item, "\(expected)")
        }
        let long = CBOR.array((1...25).map { CBOR.int(Int64($0)) })
        #expect(Hex.encode(try long.encoded()) == "98190102030405060708090a0b0c0d0e0f101112131415161718181819")
    }

    /// RFC 8949 §4.2.1's ordering example, with the pairs given in reverse.
    @Test func sortsMapKeysByTheirEncodedBytes() throws {
        let keys: [CBOR] = [.int(10), .int(100), .int(-1), .text("z"), .text("aa"), .array([.int(100)]), .array([.int(-1)]), .bool(false)]
        let map = CBOR.map(keys.reversed().enumerated().map { ($0.element, .int(Int64($0.offset))) })
        guard case .map(let decoded) = try CBOR(decoding: try map.encoded()) else {
            Issue.record("not a map")
            return
        }
        #expect(decoded.map(\.0) == keys)
        #expect(throws: CBORError.nonCanonical("duplicate map key")) { try CBOR.map([(.int(1), .int(1)), (.int(1), .int(2))]).encoded() }
    }

    @Test func refusesNonDeterministicAndUnsupportedInput() {
        let refused: [(String, CBORError)] = [
            ("1817", .nonCanonical("integer or length not in its shortest form")),
            ("190017", .nonCanonical("integer or length not in its shortest form")),
            ("5800", .nonCanonical("integer or length not in its shortest form")),
            ("9fff", .nonCanonical("indefinite length")),
            ("5f4101ff", .nonCanonical("indefinite length")),
            ("a203040102", .nonCanonical("map keys out of order")),
            ("a201020103", .nonCanonical("duplicate map key")),
            ("f97e00", .unsupported("floating-point numbers")),
            ("fb3ff199999999999a", .unsupported("floating-point numbers")),
            ("f7", .unsupported("simple value 23")),
            ("1c", .unsupported("reserved additional information 28")),
            ("62c328", .invalidUTF8),
            ("0000", .trailingBytes),
            ("", .truncated),
            ("5bffffffffffffffff", .tooLong),
            ("9bffffffffffffffff", .tooLong),
            ("bb7fffffffffffffff", .tooLong),
        ]
        for (input, error) in refused {
            #expect(throws: error, "\(input)") { try CBOR(decoding: hex(input)) }
        }
        let deep = [UInt8](repeating: 0x81, count: 1000) + [0x00]
        #expect(throws: CBORError.tooDeep) { try CBOR(decoding: deep) }
        let tags = [UInt8](repeating: 0xC1, count: 1000) + [0x00]
        #expect(throws: CBORError.tooDeep) { try CBOR(decoding: tags) }
    }

    @Test func everyTruncationOfAValidItemIsRefused() throws {
        let item = CBOR.map([
            (.text("receipt"), .array([.bytes(Array(repeating: 7, count: 40)), .int(-300), .unsigned(70_000), .null])),
            (.int(1), .tagged(18, .text("ü and more text"))),
        ])
        let bytes = try item.encoded()
        for length in 0..<bytes.count {
            #expect(throws: CBORError.self) { try CBOR(decoding: bytes.prefix(length)) }
        }
        #expect(try CBOR(decoding: bytes) == item)
    }

    /// Random trees round-trip to the same bytes; random bytes never trap, and whatever decodes re-encodes to
    /// exactly the input (one value, one encoding).
    @Test func randomItemsRoundTripAndRandomBytesNeverCrash() async throws {
        var generator = SplitMix(seed: 0x4845_4152_5448)
        func randomItem(_ depth: Int) -> CBOR {
            switch generator.next() % (depth > 3 ? 6 : 9) {
            case 0: return .unsigned(generator.next() >> (generator.next() % 64))
            case 1: return .negative(generator.next() >> (generator.next() % 64))
            case 2: return .bytes((0..<Int(generator.next() % 40)).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
            case 3: return .text(String((0..<Int(generator.next() % 12)).map { _ in Character(UnicodeScalar(UInt8(97 + generator.next() % 26))) }))
            case 4: return .bool(generator.next() % 2 == 0)
            case 5: return .null
            case 6: return .array((0..<Int(generator.next() % 5)).map { _ in randomItem(depth + 1) })
            case 7:
                var pairs: [(CBOR, CBOR)] = []
                for index in 0..<Int(generator.next() % 5) { pairs.append((.text("k\(index)"), randomItem(depth + 1))) }
                return .map(pairs)
            default: return .tagged(generator.next() % 100, randomItem(depth + 1))
            }
        }
        for iteration in 0..<2000 {
            await pace(iteration)
            let item = randomItem(0)
            let bytes = try item.encoded()
            let decoded = try CBOR(decoding: bytes)
            #expect(decoded == item)
            #expect(try decoded.encoded() == bytes)
        }
        var decodedCount = 0
        for iteration in 0..<50_000 {
            await pace(iteration, every: 1024)
            let bytes = (0..<Int(generator.next() % 24)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if let item = try? CBOR(decoding: bytes) {
                decodedCount += 1
                #expect(try item.encoded() == bytes, "\(Hex.encode(bytes))")
            }
        }
        #expect(decodedCount > 0)
    }
}

/// A small deterministic generator, so a failing case can be replayed.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

struct COSESign1Tests {
    let key = IdentityKey.generate()

    @Test func signsAndVerifiesAndSurvivesEncoding() throws {
        let payload = try CBOR.map([(.text("tokens"), .int(42))]).encoded()
        let message = try COSESign1.sign(payload: payload, with: key)
        let bytes = try message.encoded()
        #expect(bytes.first == 0xD2)  // tag 18
        let read = try COSESign1(decoding: bytes)
        #expect(read == message)
        #expect(read.isValid(publicKey: key.publicKey))
        #expect(read.keyID == Array(key.publicKey))
        #expect(Hex.encode(read.protectedHeader) == "a10127")  // {1: -8}
    }

    @Test func refusesTamperingAnotherKeyAndAnotherAlgorithm() throws {
        let message = try COSESign1.sign(payload: [1, 2, 3], with: key)
        var payload = message
        payload.payload = [1, 2, 4]
        #expect(!payload.isValid(publicKey: key.publicKey))
        #expect(!message.isValid(publicKey: IdentityKey.generate().publicKey))
        var flipped = message
        flipped.signature[0] ^= 1
        #expect(!flipped.isValid(publicKey: key.publicKey))
        // A header naming ES256 (-7), even signed correctly by this key, is not an EdDSA message.
        let es256 = try CBOR.map([(.int(1), .int(-7))]).encoded()
        let other = COSESign1(
            protectedHeader: es256,
            keyID: nil,
            payload: [1, 2, 3],
            signature: Array(try key.sign(try COSESign1.sigStructure(protected: es256, payload: [1, 2, 3])))
        )
        #expect(!other.isValid(publicKey: key.publicKey))
        #expect(throws: COSEError.notCOSESign1) { try COSESign1(decoding: try CBOR.array([.null]).encoded()) }
        #expect(throws: COSEError.notCOSESign1) {
            try COSESign1(decoding: try CBOR.tagged(18, .array([.bytes([]), .null, .bytes([]), .bytes([])])).encoded())
        }
    }
}
