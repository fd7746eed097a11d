import Crypto
import ProxyModel
import Testing

@testable import IdentityCore

@Suite("Token verification: valid tokens and claims")
struct TokenVerifierTests {
    static let allKeys = Mint.keySet([.rsa, .p256, .p384, .ed25519], kids: ["rsa", "p256", "p384", "ed"])

    static func kid(for algorithm: JWSAlgorithm) -> String {
        switch algorithm.keyType {
        case .rsa: return "rsa"
        case .ecP256: return "p256"
        case .ecP384: return "p384"
        case .ed25519: return "ed"
        }
    }

    @Test(arguments: JWSAlgorithm.allCases)
    func everySupportedAlgorithmVerifies(_ algorithm: JWSAlgorithm) throws {
        let token = Mint.token(algorithm, kid: Self.kid(for: algorithm))
        let outcome = TokenVerifier.verify(
            token,
            keys: Self.allKeys,
            policy: Mint.policy,
            audiences: [Mint.audience],
            now: Mint.now
        )
        let verified = try #require(outcome.verified, "\(outcome)")
        #expect(verified.issuer == Mint.issuer)
        #expect(verified.keyID == Self.kid(for: algorithm))
        #expect(verified.expiresAt == Mint.now + 600)
        #expect(verified.principal.subject == "alice")
        #expect(verified.keyThumbprint == Self.allKeys.keys(withID: Self.kid(for: algorithm)).first?.thumbprint)
        // The signature layer agrees.
        let key = try #require(Self.allKeys.keys(withID: Self.kid(for: algorithm)).first)
        #expect(TokenVerifier.verifySignature(token: token, key: key) == .success(algorithm))
    }

    @Test(arguments: JWSAlgorithm.allCases)
    func aSignatureByAnotherKeyOfTheSameTypeIsInvalid(_ algorithm: JWSAlgorithm) {
        let intruder: TestSigner
        switch algorithm.keyType {
        case .rsa: intruder = .otherRSA
        case .ecP256: intruder = .otherP256
        case .ecP384: intruder = .p384(.init())
        case .ed25519: intruder = .ed25519(.init())
        }
        let token = Mint.token(algorithm, signer: intruder, kid: Self.kid(for: algorithm))
        let outcome = TokenVerifier.verify(
            token,
            keys: Self.allKeys,
            policy: Mint.policy,
            audiences: [Mint.audience],
            now: Mint.now
        )
        #expect(outcome.reason == .tokenSignatureInvalid)
    }

    @Test func principalCarriesEmailGroupsAndEveryClaim() throws {
        let payload = Mint.claims(extra: [
            #""email":"alice@example.com""#, #""groups":["admins",7,"viewers",null]"#,
            #""realm_access":{"roles":["ops"]}"#, #""https://example.com/roles":"dotted""#,
        ])
        let token = Mint.token(.ES256, kid: "p256", payload: payload)
        let verified = try #require(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .verified
        )
        let principal = verified.principal
        #expect(principal.issuer == Mint.issuer)
        #expect(principal.email == "alice@example.com")
        #expect(principal.groups == ["admins", "viewers"])  // other element types ignored
        #expect(principal.expiresAt == Mint.now + 600)
        #expect(principal.claims["realm_access"] == .object(["roles": .array([.string("ops")])]))
        #expect(principal.claims.count == 9)

        var nested = Mint.policy
        nested.groupsClaim = "realm_access.roles"
        #expect(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: nested, audiences: ["airflow"], now: Mint.now)
                .verified?.principal.groups == ["ops"]
        )
        // A claim name with dots is looked up as a name first.
        var namespaced = Mint.policy
        namespaced.groupsClaim = "https://example.com/roles"
        #expect(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: namespaced, audiences: ["airflow"], now: Mint.now)
                .verified?.principal.groups == ["dotted"]
        )
        var missing = Mint.policy
        missing.groupsClaim = "nope.nothing"
        missing.emailClaim = "mail"
        let bare = try #require(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: missing, audiences: ["airflow"], now: Mint.now)
                .verified
        )
        #expect(bare.principal.groups == [])
        #expect(bare.principal.email == nil)
    }

    @Test func singleStringGroupsClaim() {
        let token = Mint.token(.EdDSA, kid: "ed", payload: Mint.claims(extra: [#""groups":"admins""#]))
        let outcome = TokenVerifier.verify(
            token,
            keys: Self.allKeys,
            policy: Mint.policy,
            audiences: ["airflow"],
            now: Mint.now
        )
        #expect(outcome.verified?.principal.groups == ["admins"])
    }

    // MARK: - Time claims, at the edges of the skew (60 s by default)

    struct TimeCase: Sendable, CustomTestStringConvertible {
        let name: String
        let payload: String
        let expected: ReasonCode?
        var testDescription: String { self.name }
    }

    static let timeCases: [TimeCase] = [
        TimeCase(name: "exp in the future", payload: Mint.claims(exp: "\(Mint.now + 1)"), expected: nil),
        TimeCase(name: "exp just inside the skew", payload: Mint.claims(exp: "\(Mint.now - 59)"), expected: nil),
        TimeCase(name: "exp at the skew edge", payload: Mint.claims(exp: "\(Mint.now - 60)"), expected: .tokenExpired),
        TimeCase(name: "exp long past", payload: Mint.claims(exp: "\(Mint.now - 3600)"), expected: .tokenExpired),
        TimeCase(name: "exp as a float", payload: Mint.claims(exp: "\(Mint.now + 10).5"), expected: nil),
        TimeCase(name: "exp in exponent form", payload: Mint.claims(exp: "1.7000006e9"), expected: nil),
        TimeCase(name: "exp missing", payload: Mint.claims(exp: nil), expected: .tokenMissingClaim),
        TimeCase(
            name: "exp as a string",
            payload: Mint.claims(exp: "\"\(Mint.now + 600)\""),
            expected: .tokenMalformed
        ),
        TimeCase(name: "exp null", payload: Mint.claims(exp: "null"), expected: .tokenMalformed),
        TimeCase(name: "exp true", payload: Mint.claims(exp: "true"), expected: .tokenMalformed),
        TimeCase(name: "exp huge", payload: Mint.claims(exp: "9223372036854775807"), expected: nil),
        TimeCase(name: "exp beyond Int64", payload: Mint.claims(exp: "1e30"), expected: nil),
        TimeCase(name: "nbf within the skew", payload: Mint.claims(nbf: "\(Mint.now + 60)"), expected: nil),
        TimeCase(name: "nbf in the future", payload: Mint.claims(nbf: "\(Mint.now + 61)"), expected: .tokenNotYetValid),
        TimeCase(name: "nbf as a string", payload: Mint.claims(nbf: "\"0\""), expected: .tokenMalformed),
        TimeCase(name: "iat within the skew", payload: Mint.claims(iat: "\(Mint.now + 60)"), expected: nil),
        TimeCase(
            name: "iat in the future",
            payload: Mint.claims(iat: "\(Mint.now + 61)"),
            expected: .tokenIssuedInFuture
        ),
        TimeCase(name: "iat absent", payload: Mint.claims(iat: nil), expected: nil),
        TimeCase(name: "iat as an object", payload: Mint.claims(iat: "{}"), expected: .tokenMalformed),
    ]

    @Test(arguments: TokenVerifierTests.timeCases)
    func timeClaims(_ row: TimeCase) {
        let token = Mint.token(.ES256, kid: "p256", payload: row.payload)
        let outcome = TokenVerifier.verify(
            token,
            keys: Self.allKeys,
            policy: Mint.policy,
            audiences: ["airflow"],
            now: Mint.now
        )
        if let expected = row.expected {
            #expect(outcome.reason == expected, "\(outcome)")
        } else {
            #expect(outcome.verified != nil, "\(outcome)")
        }
    }

    @Test func fractionalExpRoundsDownAndSkewIsConfigurable() throws {
        let token = Mint.token(.ES256, kid: "p256", payload: Mint.claims(exp: "\(Mint.now + 10).9"))
        let verified = try #require(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .verified
        )
        #expect(verified.expiresAt == Mint.now + 10)

        var strict = Mint.policy
        strict.clockSkew = 0
        let justExpired = Mint.token(.ES256, kid: "p256", payload: Mint.claims(exp: "\(Mint.now)"))
        #expect(
            TokenVerifier.verify(justExpired, keys: Self.allKeys, policy: strict, audiences: ["airflow"], now: Mint.now)
                .reason == .tokenExpired
        )
        #expect(
            TokenVerifier.verify(
                justExpired,
                keys: Self.allKeys,
                policy: Mint.policy,
                audiences: ["airflow"],
                now: Mint.now
            ).verified != nil
        )
        strict.clockSkew = -100  // counts as 0, never widens the window the wrong way
        let fresh = Mint.token(.ES256, kid: "p256", payload: Mint.claims(exp: "\(Mint.now + 1)"))
        #expect(
            TokenVerifier.verify(fresh, keys: Self.allKeys, policy: strict, audiences: ["airflow"], now: Mint.now)
                .verified != nil
        )
    }

    // MARK: - iss, aud, sub, typ

    struct ClaimCase: Sendable, CustomTestStringConvertible {
        let name: String
        let payload: String
        let audiences: [String]
        let expected: ReasonCode?
        var testDescription: String { self.name }
    }

    static let claimCases: [ClaimCase] = [
        ClaimCase(name: "aud string", payload: Mint.claims(aud: #""airflow""#), audiences: ["airflow"], expected: nil),
        ClaimCase(
            name: "aud array",
            payload: Mint.claims(aud: #"["other","airflow"]"#),
            audiences: ["airflow"],
            expected: nil
        ),
        ClaimCase(
            name: "one of the route audiences",
            payload: Mint.claims(aud: #""api""#),
            audiences: ["airflow", "api"],
            expected: nil
        ),
        ClaimCase(
            name: "aud other",
            payload: Mint.claims(aud: #""evil""#),
            audiences: ["airflow"],
            expected: .tokenAudienceMismatch
        ),
        ClaimCase(
            name: "aud case differs",
            payload: Mint.claims(aud: #""Airflow""#),
            audiences: ["airflow"],
            expected: .tokenAudienceMismatch
        ),
        ClaimCase(
            name: "aud empty array",
            payload: Mint.claims(aud: "[]"),
            audiences: ["airflow"],
            expected: .tokenAudienceMismatch
        ),
        ClaimCase(
            name: "no audiences configured",
            payload: Mint.claims(),
            audiences: [],
            expected: .tokenAudienceMismatch
        ),
        ClaimCase(
            name: "aud missing",
            payload: Mint.claims(aud: nil),
            audiences: ["airflow"],
            expected: .tokenMissingClaim
        ),
        ClaimCase(
            name: "aud number",
            payload: Mint.claims(aud: "1"),
            audiences: ["airflow"],
            expected: .tokenMalformed
        ),
        ClaimCase(
            name: "aud array with a number",
            payload: Mint.claims(aud: #"["airflow",1]"#),
            audiences: ["airflow"],
            expected: .tokenMalformed
        ),
        ClaimCase(
            name: "iss other",
            payload: Mint.claims(iss: "https://evil.example"),
            audiences: ["airflow"],
            expected: .tokenIssuerNotAccepted
        ),
        ClaimCase(
            name: "iss with trailing slash",
            payload: Mint.claims(iss: Mint.issuer + "/"),
            audiences: ["airflow"],
            expected: .tokenIssuerNotAccepted
        ),
        ClaimCase(
            name: "iss missing",
            payload: Mint.claims(iss: nil),
            audiences: ["airflow"],
            expected: .tokenMissingClaim
        ),
        ClaimCase(
            name: "iss number",
            payload: Mint.claims(iss: nil, extra: [#""iss":5"#]),
            audiences: ["airflow"],
            expected: .tokenMalformed
        ),
        ClaimCase(
            name: "sub missing",
            payload: Mint.claims(sub: nil),
            audiences: ["airflow"],
            expected: .tokenMissingClaim
        ),
        ClaimCase(
            name: "sub number",
            payload: Mint.claims(sub: nil, extra: [#""sub":42"#]),
            audiences: ["airflow"],
            expected: .tokenMalformed
        ),
    ]

    @Test(arguments: TokenVerifierTests.claimCases)
    func claims(_ row: ClaimCase) {
        let token = Mint.token(.RS256, kid: "rsa", payload: row.payload)
        let outcome = TokenVerifier.verify(
            token,
            keys: Self.allKeys,
            policy: Mint.policy,
            audiences: row.audiences,
            now: Mint.now
        )
        if let expected = row.expected {
            #expect(outcome.reason == expected, "\(outcome)")
        } else {
            #expect(outcome.verified != nil, "\(outcome)")
        }
    }

    @Test(
        arguments: [
            ("JWT", "JWT", true), ("jwt", "JWT", true), ("application/jwt", "JWT", true),
            ("at+jwt", "application/at+JWT", true),
            ("at+jwt", "JWT", false), ("application/x/jwt", "x/jwt", false), (nil, "JWT", false),
        ] as [(String?, String, Bool)]
    )
    func requiredType(tokenType: String?, required: String, accepted: Bool) {
        var members = [#""alg":"ES256""#, #""kid":"p256""#]
        if let tokenType { members.append(#""typ":"\#(tokenType)""#) }
        let token = Mint.token(
            header: "{" + members.joined(separator: ",") + "}",
            payload: Mint.claims(),
            signer: .p256,
            signAs: "ES256"
        )
        var policy = Mint.policy
        policy.requiredType = required
        let outcome = TokenVerifier.verify(
            token,
            keys: Self.allKeys,
            policy: policy,
            audiences: ["airflow"],
            now: Mint.now
        )
        if accepted {
            #expect(outcome.verified != nil, "\(outcome)")
        } else {
            #expect(outcome.reason == .tokenTypeMismatch)
        }
        // Without a required type, typ is not looked at.
        #expect(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .verified != nil
        )
    }

    // MARK: - Key selection

    @Test func singleKeySetAcceptsATokenWithoutKid() {
        let keys = Mint.keySet([.p256], kids: [nil])
        let token = Mint.token(.ES256, kid: nil)
        let outcome = TokenVerifier.verify(
            token,
            keys: keys,
            policy: Mint.policy,
            audiences: ["airflow"],
            now: Mint.now
        )
        #expect(outcome.verified?.keyID == nil)
        // Also when the single key has a kid.
        #expect(
            TokenVerifier.verify(
                token,
                keys: Mint.keySet([.p256]),
                policy: Mint.policy,
                audiences: ["airflow"],
                now: Mint.now
            ).verified != nil
        )
    }

    @Test func keysSharingAKidAreAllTried() {
        let keys = Mint.keySet([.otherP256, .p256], kids: ["same", "same"])
        let token = Mint.token(.ES256, kid: "same")
        #expect(
            TokenVerifier.verify(token, keys: keys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now).verified
                != nil
        )
    }

    @Test func emptySetAsksForKeys() {
        let token = Mint.token(.ES256, kid: "p256")
        #expect(
            TokenVerifier.verify(token, keys: .empty, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                == .unknownKey(kid: "p256")
        )
        let noKid = Mint.token(.ES256, kid: nil)
        #expect(
            TokenVerifier.verify(
                noKid,
                keys: JWKSet(keys: []),
                policy: Mint.policy,
                audiences: ["airflow"],
                now: Mint.now
            ) == .unknownKey(kid: nil)
        )
    }

    @Test func issuerIsCheckedBeforeAnyKeyLookup() {
        // A token for another issuer never asks for a refetch of this issuer's keys.
        let token = Mint.token(.ES256, kid: "not-here", payload: Mint.claims(iss: "https://other.example"))
        #expect(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .reason == .tokenIssuerNotAccepted
        )
    }

    @Test func parsedTokenCanBeVerifiedWithoutReparsing() throws {
        let token = Mint.token(.PS256, kid: "rsa")
        let parsed = try UnverifiedToken.parse(token).get()
        #expect(parsed.issuer == Mint.issuer)
        #expect(parsed.keyID == "rsa")
        #expect(parsed.algorithm == "PS256")
        #expect(parsed.header["typ"] == .string("JWT"))
        #expect(parsed.byteCount == token.utf8.count)
        #expect(
            TokenVerifier.verify(parsed, keys: Self.allKeys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .verified != nil
        )
        var small = Mint.policy
        small.maxTokenBytes = 100
        #expect(
            TokenVerifier.verify(parsed, keys: Self.allKeys, policy: small, audiences: ["airflow"], now: Mint.now)
                .reason == .tokenTooLarge
        )
    }

    @Test func substringsAreAccepted() {
        let header = "Bearer " + Mint.token(.EdDSA, kid: "ed")
        let token = header.dropFirst("Bearer ".count)
        #expect(
            TokenVerifier.verify(token, keys: Self.allKeys, policy: Mint.policy, audiences: ["airflow"], now: Mint.now)
                .verified != nil
        )
    }

    @Test func rejectionDescriptionsNeverEchoTheToken() {
        let secretish = "s3cr3t-claim-value"
        let tokens = [
            Mint.token(.ES256, kid: "p256", payload: Mint.claims(aud: #""\#(secretish)""#)),
            Mint.token(.ES256, kid: "p256", payload: Mint.claims(iss: secretish)),
            Mint.token(header: #"{"alg":"\#(secretish)"}"#, payload: Mint.claims(), signer: nil, signAs: ""),
            Mint.token(.ES256, kid: "p256") + secretish,
        ]
        for token in tokens {
            guard
                case .rejected(let rejection) = TokenVerifier.verify(
                    token,
                    keys: Self.allKeys,
                    policy: Mint.policy,
                    audiences: ["airflow"],
                    now: Mint.now
                )
            else {
                Issue.record("expected a rejection")
                continue
            }
            #expect(!rejection.description.contains(secretish))
            #expect(!rejection.description.contains("eyJ"))
        }
    }
}
