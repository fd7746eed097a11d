import Crypto
import Foundation
import ProxyModel
import Testing

@testable import IdentityCore

/// Published JWS test vectors, copied from the RFCs (RFC 7520's also from the ietf-jose/cookbook
/// JSON files). Signature layer only: these carry old (2011) or no `exp`, and RFC 7520/8037 payloads
/// are not even JSON, so claims are tested elsewhere.
enum RFCVectors {
    // RFC 7515 appendix A: the payload shared by A.1 to A.3.
    static let rfc7515Payload =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"

    // A.1: HMAC SHA-256.
    static let a1Token =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." + rfc7515Payload
        + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    static let a1Key =
        #"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#

    // A.2: RSASSA-PKCS1-v1_5 SHA-256.
    static let a2Key =
        #"{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#
    static let a2Token =
        "eyJhbGciOiJSUzI1NiJ9." + rfc7515Payload
        + ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"

    // A.3: ECDSA P-256 SHA-256.
    static let a3Key =
        #"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#
    static let a3Token =
        "eyJhbGciOiJFUzI1NiJ9." + rfc7515Payload
        + ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"

    // RFC 8037 A.2 (public key) and A.4 (Ed25519 signature over "Example of Ed25519 signing").
    static let rfc8037Key = #"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
    static let rfc8037A4Token =
        "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
        + "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"

    // RFC 7520 3.3 / 3.4: the RSA public key used by 4.1 and 4.2.
    static let rfc7520RSAKey =
        #"{"kty":"RSA","kid":"bilbo.baggins@hobbiton.example","use":"sig","n":"n4EPtAOCc9AlkeQHPzHStgAbgs7bTZLwUBZdR8_KuKPEHLd4rHVTeT-O-XV2jRojdNhxJWTDvNd7nqQ0VEiZQHz_AJmSCpMaJMRBSFKrKb2wqVwGU_NsYOYL-QtiWN2lbzcEe6XC0dApr5ydQLrHqkHHig3RBordaZ6Aj-oBHqFEHYpPe7Tpe-OfVfHd1E6cS6M1FZcD1NNLYD5lFHpPI9bTwJlsde3uhGqC0ZCuEHg8lhzwOHrtIQbS0FVbb9k3-tVTU4fg_3L_vniUFAKwuCLqKnS2BYwdq_mzSnbLY7h_qixoR7jig3__kRhuaxwUkRz5iaiQkqgc5gHdrNP5zw","e":"AQAB"}"#
    // RFC 7520 3.2: the P-521 key used by 4.3.
    static let rfc7520P521Key =
        #"{"kty":"EC","kid":"bilbo.baggins@hobbiton.example","use":"sig","crv":"P-521","x":"AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt","y":"AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1"}"#
    // RFC 7520 4: "It’s a dangerous business, Frodo, going out your door. ..."
    static let rfc7520Payload =
        "SXTigJlzIGEgZGFuZ2Vyb3VzIGJ1c2luZXNzLCBGcm9kbywgZ29pbmcgb3V0IHlvdXIgZG9vci4gWW91IHN0ZXAgb250byB0aGUgcm9hZCwgYW5kIGlmIHlvdSBkb24ndCBrZWVwIHlvdXIgZmVldCwgdGhlcmXigJlzIG5vIGtub3dpbmcgd2hlcmUgeW91IG1pZ2h0IGJlIHN3ZXB0IG9mZiB0by4"
    static let rfc7520_4_1 =
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9." + rfc7520Payload
        + ".MRjdkly7_-oTPTS3AXP41iQIGKa80A0ZmTuV5MEaHoxnW2e5CZ5NlKtainoFmKZopdHM1O2U4mwzJdQx996ivp83xuglII7PNDi84wnB-BDkoBwA78185hX-Es4JIwmDLJK3lfWRa-XtL0RnltuYv746iYTh_qHRD68BNt1uSNCrUCTJDt5aAE6x8wW1Kt9eRo4QPocSadnHXFxnt8Is9UzpERV0ePPQdLuW3IS_de3xyIrDaLGdjluPxUAhb6L2aXic1U12podGU0KLUQSE_oI-ZnmKJ3F4uOZDnd6QZWJushZ41Axf_fcIe8u9ipH84ogoree7vjbU5y18kDquDg"
    static let rfc7520_4_2 =
        "eyJhbGciOiJQUzM4NCIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9." + rfc7520Payload
        + ".cu22eBqkYDKgIlTpzDXGvaFfz6WGoz7fUDcfT0kkOy42miAh2qyBzk1xEsnk2IpN6-tPid6VrklHkqsGqDqHCdP6O8TTB5dDDItllVo6_1OLPpcbUrhiUSMxbbXUvdvWXzg-UD8biiReQFlfz28zGWVsdiNAUf8ZnyPEgVFn442ZdNqiVJRmBqrYRXe8P_ijQ7p8Vdz0TTrxUeT3lm8d9shnr2lfJT8ImUjvAA2Xez2Mlp8cBE5awDzT0qI0n6uiP1aCN_2_jLAeQTlqRHtfa64QQSUmFAAjVKPbByi7xho0uTOcbH510a6GYmJUAfmWjwZ6oD4ifKo8DYM-X72Eaw"
    static let rfc7520_4_3 =
        "eyJhbGciOiJFUzUxMiIsImtpZCI6ImJpbGJvLmJhZ2dpbnNAaG9iYml0b24uZXhhbXBsZSJ9." + rfc7520Payload
        + ".AE_R_YZCChjn4791jSQCrdPZCNYqHXCTZH0-JZGYNlaAjP2kqaluUIIUnC9qvbu9Plon7KRTzoNEuT4Va2cmL1eJAQy3mtPBu_u_sDDyYjnAMDxXPn7XrT0lw-kvAD890jl8e2puQens_IEKBpHABlsbEPX6sFY8OcGDqoRuBomu9xQ2"

    static func key(_ json: String) -> JWK {
        let set = try! JWKSet.parse(Array(#"{"keys":[\#(json)]}"#.utf8)).get()
        precondition(set.keys.count == 1, "vector key did not parse")
        return set.keys[0]
    }

    /// Flips the last signature character (a valid base64url change of the final bits' neighbour).
    static func tampered(_ token: String) -> String {
        var characters = Array(token)
        let index = characters.count - 3
        characters[index] = characters[index] == "A" ? "B" : "A"
        return String(characters)
    }
}

struct VectorCase: Sendable, CustomTestStringConvertible {
    let name: String
    let token: String
    let keyJSON: String
    /// The algorithm it must verify as, or the reason it must be refused with.
    let expected: Result<JWSAlgorithm, TokenRejection>

    var testDescription: String { self.name }
}

@Suite("Signature layer: published vectors")
struct RFCVectorTests {
    static let table: [VectorCase] = [
        VectorCase(
            name: "RFC 7515 A.2 RS256",
            token: RFCVectors.a2Token,
            keyJSON: RFCVectors.a2Key,
            expected: .success(.RS256)
        ),
        VectorCase(
            name: "RFC 7515 A.3 ES256",
            token: RFCVectors.a3Token,
            keyJSON: RFCVectors.a3Key,
            expected: .success(.ES256)
        ),
        VectorCase(
            name: "RFC 8037 A.4 EdDSA",
            token: RFCVectors.rfc8037A4Token,
            keyJSON: RFCVectors.rfc8037Key,
            expected: .success(.EdDSA)
        ),
        VectorCase(
            name: "RFC 7520 4.1 RS256",
            token: RFCVectors.rfc7520_4_1,
            keyJSON: RFCVectors.rfc7520RSAKey,
            expected: .success(.RS256)
        ),
        VectorCase(
            name: "RFC 7520 4.2 PS384",
            token: RFCVectors.rfc7520_4_2,
            keyJSON: RFCVectors.rfc7520RSAKey,
            expected: .success(.PS384)
        ),
        // HMAC is never accepted, whatever key is offered: refused before the key is looked at.
        VectorCase(
            name: "RFC 7515 A.1 HS256 refused",
            token: RFCVectors.a1Token,
            keyJSON: RFCVectors.a2Key,
            expected: .failure(TokenRejection(.tokenAlgorithmNotAllowed, "HMAC algorithms are never accepted"))
        ),
        // ES512 is not supported (P-521 keys are skipped in sets): refused as an unsupported algorithm.
        VectorCase(
            name: "RFC 7520 4.3 ES512 refused",
            token: RFCVectors.rfc7520_4_3,
            keyJSON: RFCVectors.rfc7520RSAKey,
            expected: .failure(TokenRejection(.tokenAlgorithmNotAllowed, "unsupported algorithm"))
        ),
        // Controls: the same vectors with one signature byte changed, or with the other vector's key.
        VectorCase(
            name: "A.2 tampered",
            token: RFCVectors.tampered(RFCVectors.a2Token),
            keyJSON: RFCVectors.a2Key,
            expected: .failure(.signatureInvalid)
        ),
        VectorCase(
            name: "A.3 tampered",
            token: RFCVectors.tampered(RFCVectors.a3Token),
            keyJSON: RFCVectors.a3Key,
            expected: .failure(.signatureInvalid)
        ),
        VectorCase(
            name: "8037 A.4 tampered",
            token: RFCVectors.tampered(RFCVectors.rfc8037A4Token),
            keyJSON: RFCVectors.rfc8037Key,
            expected: .failure(.signatureInvalid)
        ),
        VectorCase(
            name: "7520 4.2 tampered",
            token: RFCVectors.tampered(RFCVectors.rfc7520_4_2),
            keyJSON: RFCVectors.rfc7520RSAKey,
            expected: .failure(.signatureInvalid)
        ),
        VectorCase(
            name: "A.2 with the RFC 7520 key",
            token: RFCVectors.a2Token,
            keyJSON: RFCVectors.rfc7520RSAKey,
            expected: .failure(.signatureInvalid)
        ),
        VectorCase(
            name: "A.3 with an RSA key",
            token: RFCVectors.a3Token,
            keyJSON: RFCVectors.a2Key,
            expected: .failure(TokenRejection(.tokenAlgorithmNotAllowed, "algorithm does not fit the key"))
        ),
    ]

    @Test(arguments: RFCVectorTests.table)
    func vector(_ row: VectorCase) {
        let outcome = TokenVerifier.verifySignature(token: row.token, key: RFCVectors.key(row.keyJSON))
        #expect(outcome == row.expected)
    }

    /// The A.1 vector is genuine (its HMAC verifies with the RFC's key) and is still refused, and an
    /// `oct` key never enters a key set.
    @Test func hmacVectorIsGenuineButNeverAccepted() throws {
        let parts = RFCVectors.a1Token.split(separator: ".")
        let key = SymmetricKey(
            data: try #require(
                Base64URL.decode(
                    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
                )
            )
        )
        let mac = HMAC<SHA256>.authenticationCode(for: Array("\(parts[0]).\(parts[1])".utf8), using: key)
        #expect(b64(Array(mac)) == String(parts[2]))

        let set = try JWKSet.parse(Array(#"{"keys":[\#(RFCVectors.a1Key)]}"#.utf8)).get()
        #expect(set.keys.isEmpty)
        #expect(set.skippedKeyCount == 1)
        let outcome = TokenVerifier.verify(
            RFCVectors.a1Token,
            keys: RFCVectors.keySetWithA2(),
            policy: IssuerPolicy(issuer: "joe", algorithms: Set(JWSAlgorithm.allCases)),
            audiences: ["x"],
            now: 1_300_819_000
        )
        #expect(outcome.reason == .tokenAlgorithmNotAllowed)
    }

    /// The ES512 vector is genuine (P-521 verifies it directly with swift-crypto) and is still refused;
    /// its key is skipped when it appears in a set.
    @Test func es512VectorIsGenuineButUnsupported() throws {
        let x = try #require(
            Base64URL.decode("AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt")
        )
        let y = try #require(
            Base64URL.decode("AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1")
        )
        let publicKey = try P521.Signing.PublicKey(rawRepresentation: x + y)
        let parts = RFCVectors.rfc7520_4_3.split(separator: ".")
        let signature = try P521.Signing.ECDSASignature(rawRepresentation: try #require(Base64URL.decode(parts[2])))
        #expect(publicKey.isValidSignature(signature, for: SHA512.hash(data: Array("\(parts[0]).\(parts[1])".utf8))))

        let set = try JWKSet.parse(Array(#"{"keys":[\#(RFCVectors.rfc7520P521Key)]}"#.utf8)).get()
        #expect(set.keys.isEmpty)
        #expect(set.skippedKeyCount == 1)
    }

    /// Full verification of the A.2 vector: the signature is fine, but the claims are from 2011, so with
    /// a present-day clock it is expired; just before its `exp` it passes the time checks and fails on
    /// the `aud` the vector does not carry.
    @Test func a2ClaimsAreCheckedSeparately() {
        let policy = IssuerPolicy(issuer: "joe", algorithms: [.RS256])
        let keys = RFCVectors.keySetWithA2()
        #expect(
            TokenVerifier.verify(RFCVectors.a2Token, keys: keys, policy: policy, audiences: ["x"], now: 1_700_000_000)
                .reason == .tokenExpired
        )
        #expect(
            TokenVerifier.verify(RFCVectors.a2Token, keys: keys, policy: policy, audiences: ["x"], now: 1_300_819_000)
                .reason == .tokenMissingClaim
        )
        let parsed = try? UnverifiedToken.parse(RFCVectors.a2Token).get()
        #expect(parsed?.issuer == "joe")
        #expect(parsed?.claims["exp"] == .integer(1_300_819_380))
        #expect(parsed?.claims["http://example.com/is_root"] == .bool(true))
    }
}

extension RFCVectors {
    static func keySetWithA2() -> JWKSet { JWKSet(keys: [key(a2Key)]) }
}
