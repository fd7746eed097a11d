import Crypto
import ProxyModel
import Testing
import _CryptoExtras

@testable import IdentityCore

@Suite("JWK sets")
struct JWKSetTests {
    static func parse(_ keys: [String]) -> Result<JWKSet, JWKSetError> {
        JWKSet.parse(Array(#"{"keys":[\#(keys.joined(separator: ","))]}"#.utf8))
    }

    @Test func parsesEverySupportedKeyType() throws {
        let set = try Self.parse([
            TestSigner.rsa.jwkJSON(kid: "r", alg: "RS256"),
            TestSigner.p256.jwkJSON(kid: "e1"),
            TestSigner.p384.jwkJSON(kid: "e2", alg: "ES384"),
            TestSigner.ed25519.jwkJSON(kid: "o", alg: "EdDSA", use: nil),
        ]).get()
        #expect(set.keys.map(\.keyType) == [.rsa, .ecP256, .ecP384, .ed25519])
        #expect(set.keys.map(\.algorithm) == [.RS256, nil, .ES384, .EdDSA])
        #expect(set.keyIDs == ["r", "e1", "e2", "o"])
        #expect(set.skippedKeyCount == 0)
        #expect(Set(set.keys.map(\.thumbprint)).count == 4)
    }

    @Test func skipsWhatItCannotUse() throws {
        let set = try Self.parse([
            TestSigner.p256.jwkJSON(kid: "keep"),
            TestSigner.p256.jwkJSON(kid: "enc", use: "enc"),
            TestSigner.rsa.jwkJSON(kid: "oaep", alg: "RSA-OAEP"),
            TestSigner.rsa.jwkJSON(kid: "hs", alg: "HS256"),
            #"{"kty":"oct","k":"c2VjcmV0"}"#,
            #"{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}"#,
            #"{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}"#,
            #"{"kty":"OKP","crv":"X25519","x":"AA"}"#,
            #"{"kty":"OKP","crv":"Ed448","x":"AA"}"#,
            #"{"kty":"AKP","alg":"ML-DSA-44","pub":"AA"}"#,
            TestSigner.p256.jwkJSON(kid: "ops").dropLast() + #","key_ops":["encrypt"]}"#,
            // An RSA key below 2048 bits.
            #"{"kty":"RSA","n":"\#(b64([0xC0] + [UInt8](repeating: 0x01, count: 127)))","e":"AQAB"}"#,
        ]).get()
        #expect(set.keys.count == 1)
        #expect(set.keyIDs == ["keep"])
        #expect(set.skippedKeyCount == 11)
    }

    @Test(arguments: [
        #"{"kty":"RSA","e":"AQAB"}"#,
        #"{"kty":"RSA","n":"AQAB"}"#,
        #"{"kty":"RSA","n":"AQ==","e":"AQAB"}"#,
        #"{"kty":"RSA","n":1,"e":"AQAB"}"#,
        #"{"kty":"EC","crv":"P-256","x":"AA"}"#,
        #"{"kty":"EC","x":"AA","y":"AA"}"#,
        #"{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}"#,
        #"{"kty":"OKP","crv":"Ed25519","x":"AAAA"}"#,
        #"{"kty":"OKP","crv":"Ed25519"}"#,
        #"{"crv":"Ed25519","x":"AAAA"}"#,
        #"{"kty":1}"#,
        #""not an object""#,
        #"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":7}"#,
        #"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":true}"#,
        #"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"ES256"}"#,
        #"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","key_ops":"verify"}"#,
    ])
    func refusesMalformedSupportedKeys(_ key: String) {
        guard case .failure(let error) = Self.parse([TestSigner.p256.jwkJSON(kid: "ok"), key]) else {
            Issue.record("accepted \(key)")
            return
        }
        #expect(error.code == .malformedKey || error.code == .notJSON, "\(error)")
        if error.code == .malformedKey { #expect(error.keyIndex == 1) }
    }

    @Test func refusesAPointNotOnTheCurve() {
        // x and y of the right length, but (1, 1) is not on P-256.
        let key =
            #"{"kty":"EC","crv":"P-256","x":"\#(b64([UInt8](repeating: 0, count: 31) + [1]))","y":"\#(b64([UInt8](repeating: 0, count: 31) + [1]))"}"#
        #expect(Self.parse([key]).failureCode == .malformedKey)
    }

    @Test func refusesKeyMaterialThatContradictsItsAlg() {
        #expect(Self.parse([TestSigner.rsa.jwkJSON(kid: "r", alg: "ES256")]).failureCode == .malformedKey)
        #expect(Self.parse([TestSigner.p256.jwkJSON(kid: "e", alg: "ES384")]).failureCode == .malformedKey)
        #expect(Self.parse([TestSigner.p384.jwkJSON(kid: "e", alg: "RS256")]).failureCode == .malformedKey)
    }

    @Test(arguments: [
        ("", JWKSetError.Code.notJSON),
        ("[]", .notAKeySet),
        (#"{"keys":{}}"#, .notAKeySet),
        (#"{"kys":[]}"#, .notAKeySet),
        (#"{"keys":[],"keys":[]}"#, .notJSON),
        (#"{"keys":[]} trailing"#, .notJSON),
    ])
    func refusesDocumentsThatAreNotKeySets(_ text: String, _ code: JWKSetError.Code) {
        #expect(JWKSet.parse(Array(text.utf8)).failureCode == code)
    }

    @Test func emptyDocumentIsAnEmptySet() throws {
        let set = try JWKSet.parse(Array(#"{"keys":[]}"#.utf8)).get()
        #expect(set.keys.isEmpty)
        #expect(set.keyIDs.isEmpty)
    }

    @Test func boundsTheNumberOfKeys() {
        let keys = [String](repeating: TestSigner.ed25519.jwkJSON(kid: "k"), count: JWKSet.maxKeys + 1)
        #expect(Self.parse(keys).failureCode == .tooManyKeys)
        #expect((try? Self.parse(Array(keys.dropLast())).get())?.keys.count == JWKSet.maxKeys)
    }

    @Test func thumbprintMatchesRFC7638() throws {
        // RFC 7638 section 3.1 example key and thumbprint.
        let key =
            #"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#
        let set = try Self.parse([key]).get()
        #expect(set.keys.first?.thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    }

    @Test func keysFromRawMaterial() throws {
        guard case .p256(let privateKey) = TestSigner.p256 else { return }
        let raw = Array(privateKey.publicKey.rawRepresentation)
        let key = try JWK(ecKeyType: .ecP256, x: Array(raw[..<32]), y: Array(raw[32...]), keyID: "raw")
        let token = Mint.token(.ES256, kid: "raw")
        #expect(TokenVerifier.verifySignature(token: token, key: key) == .success(.ES256))
        #expect(throws: JWKSetError.self) { try JWK(ecKeyType: .rsa, x: [], y: []) }
        #expect(throws: JWKSetError.self) { try JWK(ed25519PublicKey: [1, 2, 3]) }
        #expect(throws: JWKSetError.self) { try JWK(rsaModulus: [1], exponent: [1, 0, 1]) }
        #expect(throws: JWKSetError.self) {
            try JWK(rsaModulus: [UInt8](repeating: 0xFF, count: 256), exponent: [1, 0, 1], algorithm: .ES256)
        }
    }
}

extension Result where Failure == JWKSetError {
    var failureCode: JWKSetError.Code? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
