import Crypto
import Foundation
import Testing

@testable import HearthCore

struct IdentityKeyTests {
    // RFC 8032 section 7.1, test 1.
    static let rfcSeed = Data(hex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    static let rfcPublic = Data(hex: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    static let rfcSignature = Data(
        hex: "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )

    var rfcKey: IdentityKey { IdentityKey(privateKey: try! Curve25519.Signing.PrivateKey(rawRepresentation: Self.rfcSeed)) }

    @Test func nodeIDIsTheSHA256OfTheRawPublicKey() {
        #expect(rfcKey.publicKey == Self.rfcPublic)
        // sha256(d75a98…511a), computed independently with Python's hashlib.
        #expect(rfcKey.nodeID.rawValue == "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9")
    }

    @Test func verifiesTheRFCSignatureAndRejectsAnyChange() {
        #expect(IdentityKey.isValidSignature(Self.rfcSignature, of: Data(), by: Self.rfcPublic))
        var flipped = Self.rfcSignature
        flipped[0] ^= 1
        #expect(!IdentityKey.isValidSignature(flipped, of: Data(), by: Self.rfcPublic))
        #expect(!IdentityKey.isValidSignature(Self.rfcSignature, of: Data([0]), by: Self.rfcPublic))
        #expect(!IdentityKey.isValidSignature(Self.rfcSignature, of: Data(), by: IdentityKey.generate().publicKey))
        #expect(!IdentityKey.isValidSignature(Self.rfcSignature, of: Data(), by: Data([1, 2, 3])))
    }

    @Test func signsWhatOnlyItsPublicKeyVerifies() throws {
        let key = IdentityKey.generate()
        let message = Data("announce".utf8)
        let signature = try key.sign(message)
        #expect(IdentityKey.isValidSignature(signature, of: message, by: key.publicKey))
        #expect(!IdentityKey.isValidSignature(signature, of: message, by: IdentityKey.generate().publicKey))
    }

    @Test func writesStandardPKCS8AndSPKIAndReadsThemBack() throws {
        let pem = rfcKey.privateKeyPEM
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/Vpguo"))
        #expect(try IdentityKey(privateKeyPEM: pem).publicKey == Self.rfcPublic)
        #expect(try IdentityKey.publicKey(fromPEM: rfcKey.publicKeyPEM) == Self.rfcPublic)
        #expect(rfcKey.publicKeyPEM.hasPrefix("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"))
    }

    @Test func refusesMalformedKeys() {
        let pem = rfcKey.privateKeyPEM
        let cases = [
            "",
            "not a key",
            pem.replacingOccurrences(of: "PRIVATE KEY", with: "PUBLIC KEY"),
            pem.replacingOccurrences(of: "MC4CAQAw", with: "MC4C!!Aw"),
            pem.replacingOccurrences(of: "MC4CAQAwBQYDK2Vw", with: "MC4CAQAwBQYDK2Vx"),
            IdentityKey.pem(testLabel: "PRIVATE KEY", der: [0x30, 0x02, 0x05, 0x00]),
        ]
        for text in cases {
            #expect(throws: IdentityKeyError.self) { try IdentityKey(privateKeyPEM: text) }
        }
        #expect(throws: IdentityKeyError.self) { try IdentityKey.publicKey(fromPEM: pem) }
    }
}

extension IdentityKey {
    static func pem(testLabel: String, der: [UInt8]) -> String {
        "-----BEGIN \(testLabel)-----\n\(Data(der).base64EncodedString())\n-----END \(testLabel)-----\n"
    }
}

extension Data {
    init(hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        self.init(bytes)
    }
}
