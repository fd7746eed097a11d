import Crypto
import Foundation
import ProxyModel
import Testing

@testable import IdentityCore

#if canImport(Glibc)
import Glibc
#endif

/// One hostile token and what must become of it.
struct AttackCase: Sendable, CustomTestStringConvertible {
    enum Expected: Sendable, Equatable {
        case rejected(ReasonCode)
        case unknownKey(String?)
    }

    let name: String
    let token: String
    var keys: JWKSet = AttackTableTests.keys
    var policy: IssuerPolicy = Mint.policy
    var audiences: [String] = ["airflow"]
    let expected: Expected

    var testDescription: String { self.name }
}

@Suite("Attack table")
struct AttackTableTests {
    static let keys = Mint.keySet([.rsa, .p256, .p384, .ed25519], kids: ["rsa", "p256", "p384", "ed"])

    static func signed(
        header: String,
        payload: String = Mint.claims(),
        signer: TestSigner,
        as algorithm: String
    ) -> String {
        Mint.token(header: header, payload: payload, signer: signer, signAs: algorithm)
    }

    /// A valid ES256 token with its signature replaced.
    static func withSignature(_ signature: [UInt8], algorithm: JWSAlgorithm = .ES256, kid: String = "p256") -> String {
        let token = Mint.token(algorithm, kid: kid)
        return token[..<token.lastIndex(of: ".")!] + "." + b64(signature)
    }

    static func hmac(_ algorithm: String, key: [UInt8], kid: String = "rsa") -> String {
        let input = b64(Mint.header(alg: algorithm, kid: kid)) + "." + b64(Mint.claims())
        let secret = SymmetricKey(data: key)
        let mac: [UInt8]
        switch algorithm {
        case "HS384": mac = Array(HMAC<SHA384>.authenticationCode(for: Array(input.utf8), using: secret))
        case "HS512": mac = Array(HMAC<SHA512>.authenticationCode(for: Array(input.utf8), using: secret))
        default: mac = Array(HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: secret))
        }
        return input + "." + b64(mac)
    }

    static let cases: [AttackCase] = {
        var cases: [AttackCase] = []
        let algorithmNotAllowed = AttackCase.Expected.rejected(.tokenAlgorithmNotAllowed)
        let malformed = AttackCase.Expected.rejected(.tokenMalformed)
        let signatureInvalid = AttackCase.Expected.rejected(.tokenSignatureInvalid)

        // alg none, every casing, with and without a signature, with and without a trusted kid.
        for spelling in ["none", "None", "NONE", "nOnE"] {
            for kid in ["rsa", nil] as [String?] {
                let unsigned = b64(Mint.header(alg: spelling, kid: kid)) + "." + b64(Mint.claims())
                cases.append(
                    AttackCase(
                        name: "alg \(spelling), kid \(kid ?? "-"), empty signature",
                        token: unsigned + ".",
                        expected: algorithmNotAllowed
                    )
                )
                let borrowed = Mint.token(.RS256, kid: "rsa").split(separator: ".")[2]
                cases.append(
                    AttackCase(
                        name: "alg \(spelling), kid \(kid ?? "-"), a signature",
                        token: unsigned + "." + borrowed,
                        expected: algorithmNotAllowed
                    )
                )
            }
        }
        // HMAC keyed with the RSA public key (the classic key-confusion attack), as PEM and as DER.
        for algorithm in ["HS256", "HS384", "HS512"] {
            cases.append(
                AttackCase(
                    name: "\(algorithm) keyed with the public PEM",
                    token: hmac(algorithm, key: Array(TestSigner.rsa.publicKeyPEM.utf8)),
                    expected: algorithmNotAllowed
                )
            )
            cases.append(
                AttackCase(
                    name: "\(algorithm) keyed with the public DER",
                    token: hmac(algorithm, key: TestSigner.rsa.publicKeyDER),
                    expected: algorithmNotAllowed
                )
            )
        }
        cases.append(
            AttackCase(
                name: "hs256 lower case",
                token: hmac("hs256", key: TestSigner.rsa.publicKeyDER),
                expected: algorithmNotAllowed
            )
        )
        // Algorithms we do not implement, or misspelled.
        for name in ["ES512", "RS1", "es256", "ES256 ", "PS256K", "Ed25519", "HS256K", ""] {
            let header = #"{"alg":"\#(name)","kid":"p256"}"#
            cases.append(
                AttackCase(
                    name: "alg \"\(name)\"",
                    token: signed(header: header, signer: .p256, as: "ES256"),
                    expected: algorithmNotAllowed
                )
            )
        }

        // Claims.
        cases.append(
            AttackCase(
                name: "expired",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(exp: "\(Mint.now - 3600)")),
                expected: .rejected(.tokenExpired)
            )
        )
        cases.append(
            AttackCase(
                name: "nbf in the future",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(nbf: "\(Mint.now + 3600)")),
                expected: .rejected(.tokenNotYetValid)
            )
        )
        cases.append(
            AttackCase(
                name: "iat in the future beyond skew",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(iat: "\(Mint.now + 120)")),
                expected: .rejected(.tokenIssuedInFuture)
            )
        )
        cases.append(
            AttackCase(
                name: "wrong iss",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(iss: "https://attacker.example")),
                expected: .rejected(.tokenIssuerNotAccepted)
            )
        )
        cases.append(
            AttackCase(
                name: "wrong aud",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(aud: #""evil""#)),
                expected: .rejected(.tokenAudienceMismatch)
            )
        )
        cases.append(
            AttackCase(
                name: "another route's audience",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(aud: #""billing-api""#)),
                audiences: ["airflow", "airflow-api"],
                expected: .rejected(.tokenAudienceMismatch)
            )
        )
        cases.append(
            AttackCase(
                name: "missing exp",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(exp: nil)),
                expected: .rejected(.tokenMissingClaim)
            )
        )
        cases.append(
            AttackCase(
                name: "exp as a string",
                token: Mint.token(.ES256, kid: "p256", payload: Mint.claims(exp: #""9999999999""#)),
                expected: malformed
            )
        )

        // Keys.
        cases.append(
            AttackCase(
                name: "unknown kid",
                token: Mint.token(.ES256, kid: "rotated-in"),
                expected: .unknownKey("rotated-in")
            )
        )
        for junk in [
            "../../etc/passwd", "' OR 1=1 --", "p256\\u0000", "*", "", "p256 ", "P256",
            String(repeating: "A", count: 2000),
        ] {
            cases.append(
                AttackCase(
                    name: "kid junk \(junk.prefix(20))",
                    token: Mint.token(.ES256, kid: junk),
                    expected: .unknownKey(junk.replacingOccurrences(of: "\\u0000", with: "\u{0}"))
                )
            )
        }
        cases.append(
            AttackCase(
                name: "kid as a number",
                token: signed(header: #"{"alg":"ES256","kid":1}"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "kid as an object",
                token: signed(header: #"{"alg":"ES256","kid":{"$ne":null}}"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "untrusted key, trusted kid",
                token: Mint.token(.ES256, signer: .otherP256, kid: "p256"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "untrusted RSA key, trusted kid",
                token: Mint.token(.RS256, signer: .otherRSA, kid: "rsa"),
                expected: signatureInvalid
            )
        )
        let attackerJWK = TestSigner.otherP256.jwkJSON(kid: "p256")
        cases.append(
            AttackCase(
                name: "embedded jwk header",
                token: Mint.token(.ES256, signer: .otherP256, kid: "p256", headerExtra: [#""jwk":\#(attackerJWK)"#]),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "x5c header",
                token: Mint.token(
                    .RS256,
                    signer: .otherRSA,
                    kid: "rsa",
                    headerExtra: [#""x5c":["MIIB"]"#, #""x5u":"http://127.0.0.1:1/cert""#]
                ),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "two keys and no kid",
                token: Mint.token(.ES256, kid: nil),
                keys: Mint.keySet([.p256, .otherP256]),
                expected: .rejected(.tokenUnknownKey)
            )
        )
        cases.append(
            AttackCase(
                name: "RS256 naming an EC key",
                token: Mint.token(.RS256, kid: "p256"),
                expected: algorithmNotAllowed
            )
        )
        cases.append(
            AttackCase(
                name: "ES256 naming an RSA key",
                token: Mint.token(.ES256, kid: "rsa"),
                expected: algorithmNotAllowed
            )
        )
        cases.append(
            AttackCase(
                name: "ES256 naming a P-384 key",
                token: Mint.token(.ES256, kid: "p384"),
                expected: algorithmNotAllowed
            )
        )
        cases.append(
            AttackCase(
                name: "EdDSA naming an EC key",
                token: Mint.token(.EdDSA, kid: "p256"),
                expected: algorithmNotAllowed
            )
        )
        let rs384Only = JWKSet(keys: [TestSigner.rsa.jwk(kid: "rsa", alg: .RS384)])
        cases.append(
            AttackCase(
                name: "JWK alg RS384, token RS256",
                token: Mint.token(.RS256, kid: "rsa"),
                keys: rs384Only,
                expected: algorithmNotAllowed
            )
        )
        cases.append(
            AttackCase(
                name: "JWK alg RS384, token PS384",
                token: Mint.token(.PS384, kid: "rsa"),
                keys: rs384Only,
                expected: algorithmNotAllowed
            )
        )
        cases.append(
            AttackCase(
                name: "alg outside the allow-list",
                token: Mint.token(.RS256, kid: "rsa"),
                policy: IssuerPolicy(issuer: Mint.issuer, algorithms: [.ES256]),
                expected: algorithmNotAllowed
            )
        )
        cases.append(
            AttackCase(
                name: "RS512 outside the default allow-list",
                token: Mint.token(.RS512, kid: "rsa"),
                policy: IssuerPolicy(issuer: Mint.issuer),
                expected: algorithmNotAllowed
            )
        )

        // Signatures.
        cases.append(
            AttackCase(
                name: "ECDSA r = s = 0",
                token: withSignature([UInt8](repeating: 0, count: 64)),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "ECDSA P-384 r = s = 0",
                token: withSignature([UInt8](repeating: 0, count: 96), algorithm: .ES384, kid: "p384"),
                expected: signatureInvalid
            )
        )
        let realES256 = Base64URL.decode(Mint.token(.ES256, kid: "p256").split(separator: ".")[2])!
        cases.append(
            AttackCase(
                name: "ECDSA r = 0",
                token: withSignature([UInt8](repeating: 0, count: 32) + realES256[32...]),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "ECDSA s = 0",
                token: withSignature(Array(realES256[..<32]) + [UInt8](repeating: 0, count: 32)),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "ECDSA truncated",
                token: withSignature(Array(realES256.dropLast())),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "ECDSA with a byte appended",
                token: withSignature(realES256 + [0]),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "ECDSA as DER",
                token: withSignature(
                    Array(try! P256.Signing.ECDSASignature(rawRepresentation: realES256).derRepresentation)
                ),
                expected: signatureInvalid
            )
        )
        let realRS256 = Base64URL.decode(Mint.token(.RS256, kid: "rsa").split(separator: ".")[2])!
        cases.append(
            AttackCase(
                name: "RSA truncated",
                token: withSignature(Array(realRS256.dropLast(1)), algorithm: .RS256, kid: "rsa"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "RSA half",
                token: withSignature(Array(realRS256.prefix(128)), algorithm: .RS256, kid: "rsa"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "RSA with leading zero",
                token: withSignature([0] + realRS256, algorithm: .RS256, kid: "rsa"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "RSA empty signature",
                token: withSignature([], algorithm: .RS256, kid: "rsa"),
                expected: signatureInvalid
            )
        )
        let realEd = Base64URL.decode(Mint.token(.EdDSA, kid: "ed").split(separator: ".")[2])!
        cases.append(
            AttackCase(
                name: "Ed25519 truncated",
                token: withSignature(Array(realEd.dropLast()), algorithm: .EdDSA, kid: "ed"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "PKCS#1 signature labelled PS256",
                token: signed(header: #"{"alg":"PS256","kid":"rsa"}"#, signer: .rsa, as: "RS256"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "PSS signature labelled RS256",
                token: signed(header: #"{"alg":"RS256","kid":"rsa"}"#, signer: .rsa, as: "PS256"),
                expected: signatureInvalid
            )
        )
        cases.append(
            AttackCase(
                name: "RS256 signature labelled RS512",
                token: signed(header: #"{"alg":"RS512","kid":"rsa"}"#, signer: .rsa, as: "RS256"),
                expected: signatureInvalid
            )
        )
        let valid = Mint.token(.ES256, kid: "p256")
        let parts = valid.split(separator: ".").map(String.init)
        cases.append(
            AttackCase(
                name: "payload swapped under a valid signature",
                token: parts[0] + "." + b64(Mint.claims(sub: "admin")) + "." + parts[2],
                expected: signatureInvalid
            )
        )

        // Size.
        let huge = Mint.token(
            .ES256,
            kid: "p256",
            payload: Mint.claims(extra: [#""pad":"\#(String(repeating: "x", count: 64 * 1024))""#])
        )
        cases.append(AttackCase(name: "64 KiB token", token: huge, expected: .rejected(.tokenTooLarge)))
        cases.append(
            AttackCase(
                name: "64 KiB of dots",
                token: String(repeating: ".", count: 64 * 1024),
                expected: .rejected(.tokenTooLarge)
            )
        )

        // crit.
        cases.append(
            AttackCase(
                name: "unknown crit",
                token: Mint.token(
                    .ES256,
                    kid: "p256",
                    headerExtra: [#""crit":["http://example.invalid/flag"]"#, #""http://example.invalid/flag":true"#]
                ),
                expected: .rejected(.tokenCriticalHeader)
            )
        )
        cases.append(
            AttackCase(
                name: "crit naming exp",
                token: Mint.token(.ES256, kid: "p256", headerExtra: [#""crit":["exp"]"#, #""exp":1"#]),
                expected: .rejected(.tokenCriticalHeader)
            )
        )
        cases.append(
            AttackCase(
                name: "b64 false under crit",
                token: Mint.token(.ES256, kid: "p256", headerExtra: [#""crit":["b64"]"#, #""b64":false"#]),
                expected: .rejected(.tokenCriticalHeader)
            )
        )
        cases.append(
            AttackCase(
                name: "empty crit",
                token: Mint.token(.ES256, kid: "p256", headerExtra: [#""crit":[]"#]),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "crit not an array",
                token: Mint.token(.ES256, kid: "p256", headerExtra: [#""crit":"b64""#]),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "crit with a number",
                token: Mint.token(.ES256, kid: "p256", headerExtra: [#""crit":[1]"#]),
                expected: malformed
            )
        )

        // Duplicate JSON keys (signed properly, so only the parser can catch them).
        cases.append(
            AttackCase(
                name: "duplicate aud in payload",
                token: signed(
                    header: #"{"alg":"ES256","kid":"p256"}"#,
                    payload: Mint.claims(aud: #""evil","aud":"airflow""#),
                    signer: .p256,
                    as: "ES256"
                ),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "duplicate aud, escaped",
                token: signed(
                    header: #"{"alg":"ES256","kid":"p256"}"#,
                    payload: Mint.claims(aud: #""evil","\u0061ud":"airflow""#),
                    signer: .p256,
                    as: "ES256"
                ),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "duplicate nested key",
                token: signed(
                    header: #"{"alg":"ES256","kid":"p256"}"#,
                    payload: Mint.claims(extra: [#""realm":{"roles":[],"roles":["admin"]}"#]),
                    signer: .p256,
                    as: "ES256"
                ),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "duplicate alg in header",
                token: signed(header: #"{"alg":"none","alg":"ES256","kid":"p256"}"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "duplicate kid in header",
                token: signed(header: #"{"alg":"ES256","kid":"p256","kid":"rsa"}"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )

        // Encoding.
        let rawParts = valid.split(separator: ".").map(String.init)
        cases.append(
            AttackCase(
                name: "padding in the header",
                token: rawParts[0] + "=." + rawParts[1] + "." + rawParts[2],
                expected: malformed
            )
        )
        cases.append(AttackCase(name: "padding in the signature", token: valid + "==", expected: malformed))
        cases.append(
            AttackCase(
                name: "standard alphabet +",
                token: valid.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "+") + "+",
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "standard alphabet /",
                token: rawParts[0] + "." + rawParts[1] + "/." + rawParts[2],
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "space inside",
                token: rawParts[0] + " ." + rawParts[1] + "." + rawParts[2],
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "newline inside",
                token: rawParts[0] + "." + rawParts[1] + "\n." + rawParts[2],
                expected: malformed
            )
        )
        cases.append(AttackCase(name: "leading space", token: " " + valid, expected: malformed))
        cases.append(AttackCase(name: "trailing newline", token: valid + "\r\n", expected: malformed))
        cases.append(AttackCase(name: "non-ASCII", token: valid + "é", expected: malformed))
        cases.append(
            AttackCase(
                name: "non-canonical trailing bits",
                token: rawParts[0] + "." + rawParts[1] + "." + String(rawParts[2].dropLast())
                    + Self.sibling(of: rawParts[2].last!),
                expected: malformed
            )
        )
        cases.append(AttackCase(name: "two segments", token: rawParts[0] + "." + rawParts[1], expected: malformed))
        cases.append(AttackCase(name: "four segments", token: valid + ".", expected: malformed))
        cases.append(AttackCase(name: "JWE shape", token: valid + ".AA.AA", expected: malformed))
        cases.append(AttackCase(name: "empty", token: "", expected: malformed))
        cases.append(AttackCase(name: "only dots", token: "..", expected: malformed))
        var oddLength = rawParts[2]
        while oddLength.count % 4 != 1 { oddLength += "A" }
        cases.append(
            AttackCase(
                name: "segment of length 4n+1",
                token: rawParts[0] + "." + rawParts[1] + "." + oddLength,
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "header is an array",
                token: signed(header: #"["ES256"]"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "header is not JSON",
                token: signed(header: "alg=ES256", signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "header with trailing garbage",
                token: signed(header: #"{"alg":"ES256","kid":"p256"}x"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "alg missing",
                token: signed(header: #"{"kid":"p256"}"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "alg not a string",
                token: signed(header: #"{"alg":["ES256"],"kid":"p256"}"#, signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "payload not JSON, signed",
                token: signed(header: #"{"alg":"ES256","kid":"p256"}"#, payload: "hello", signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "payload an array, signed",
                token: signed(header: #"{"alg":"ES256","kid":"p256"}"#, payload: "[1]", signer: .p256, as: "ES256"),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "payload with NaN",
                token: signed(
                    header: #"{"alg":"ES256","kid":"p256"}"#,
                    payload: Mint.claims(exp: "NaN"),
                    signer: .p256,
                    as: "ES256"
                ),
                expected: malformed
            )
        )
        cases.append(
            AttackCase(
                name: "payload with a lone surrogate",
                token: signed(
                    header: #"{"alg":"ES256","kid":"p256"}"#,
                    payload: Mint.claims(sub: #"\ud800"#),
                    signer: .p256,
                    as: "ES256"
                ),
                expected: malformed
            )
        )
        return cases
    }()

    /// The base64url character with the same high bits and the lowest bit flipped: decodes to the same
    /// bytes in a final, partial group, so only the canonical-bits check tells them apart.
    static func sibling(of character: Character) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        let index = alphabet.firstIndex(of: character)!
        return String(alphabet[index ^ 1])
    }

    @Test(arguments: AttackTableTests.cases)
    func attack(_ row: AttackCase) {
        let outcome = TokenVerifier.verify(
            row.token,
            keys: row.keys,
            policy: row.policy,
            audiences: row.audiences,
            now: Mint.now
        )
        switch row.expected {
        case .rejected(let reason):
            #expect(outcome.reason == reason, "\(outcome)")
        case .unknownKey(let kid):
            #expect(outcome == .unknownKey(kid: kid))
        }
    }

    /// Each attack's neighbour, minted honestly, passes: so the rows above fail for the reason named,
    /// not for a fault in the fixtures.
    @Test func controlsPass() {
        let controls = [
            Mint.token(.ES256, kid: "p256"),
            Mint.token(.RS256, kid: "rsa"),
            Mint.token(.RS384, kid: "rsa"),
            Mint.token(
                .ES256,
                kid: "p256",
                headerExtra: [#""jku":"http://127.0.0.1:1/attacker""#, #""x5u":"http://127.0.0.1:1/x""#]
            ),
        ]
        for token in controls {
            #expect(
                TokenVerifier.verify(token, keys: Self.keys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                    .verified != nil
            )
        }
        let rs384Only = JWKSet(keys: [TestSigner.rsa.jwk(kid: "rsa", alg: .RS384)])
        #expect(
            TokenVerifier.verify(
                Mint.token(.RS384, kid: "rsa"),
                keys: rs384Only,
                policy: Mint.policy,
                audiences: ["airflow"],
                now: Mint.now
            ).verified != nil
        )
        let billing = Mint.token(.ES256, kid: "p256", payload: Mint.claims(aud: #""billing-api""#))
        #expect(
            TokenVerifier.verify(
                billing,
                keys: Self.keys,
                policy: Mint.policy,
                audiences: ["billing-api"],
                now: Mint.now
            ).verified != nil
        )
        // The sibling of the last character is otherwise a valid encoding: dropping the check would let it through.
        let parts = Mint.token(.ES256, kid: "p256").split(separator: ".").map(String.init)
        #expect(parts[2].count % 4 != 0)
    }

    /// `jku` pointing at a local listener: verification uses only the set, and the listener sees no
    /// connection (IdentityCore does no I/O at all).
    @Test func jkuIsNeverFetched() throws {
        #if canImport(Glibc)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(bound == 0)
        try #require(listen(listener, 16) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)

        let attackerKey = TestSigner.otherP256.jwkJSON(kid: "p256")
        let jku = "http://127.0.0.1:\(port)/attacker"
        let forged = Mint.token(
            .ES256,
            signer: .otherP256,
            kid: "p256",
            headerExtra: [#""jku":"\#(jku)""#, #""jwk":\#(attackerKey)"#]
        )
        let unknown = Mint.token(.ES256, signer: .otherP256, kid: "attacker", headerExtra: [#""jku":"\#(jku)""#])
        let honest = Mint.token(.ES256, kid: "p256", headerExtra: [#""jku":"\#(jku)""#])
        #expect(
            TokenVerifier.verify(forged, keys: Self.keys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .reason == .tokenSignatureInvalid
        )
        #expect(
            TokenVerifier.verify(unknown, keys: Self.keys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                == .unknownKey(kid: "attacker")
        )
        #expect(
            TokenVerifier.verify(honest, keys: Self.keys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .verified != nil
        )
        _ = try? UnverifiedToken.parse(forged).get()

        let accepted = accept(listener, nil, nil)
        if accepted >= 0 { close(accepted) }
        #expect(accepted < 0, "the jku listener saw a connection")
        #endif
    }
}
