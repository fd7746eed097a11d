// Micro-benchmarks for the request path's pure work outside the policy: path normalization, JWT
// verification (every algorithm the verifier accepts, full verification and a cache hit) and sealing an
// audit event (canonical JSON and SHA-256), with allocation counts. Outside CI; see README.md.
//
// Each iteration runs 1,000 operations (scalingFactor .kilo) except the JWT verifications, which are slow
// enough to be measured one per iteration.

import AuditCore
import Benchmark
import Crypto
import Foundation
import IdentityCore
import ProxyModel
import _CryptoExtras

let benchmarks: @Sendable () -> Void = {
    let micro = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 5_000
    )
    let single = Benchmark.Configuration(
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        timeUnits: .microseconds,
        warmupIterations: 20,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 20_000
    )

    // MARK: path normalization
    let paths: [(String, String)] = [
        ("clean", "/api/v1/dags/example_dag/dagRuns?limit=25&offset=0"),
        ("rewritten", "/api//v1/./dags/%7Eexample/../example_dag/dagRuns?limit=25"),
    ]
    for (name, target) in paths {
        Benchmark("PathNormalizer.normalizeTarget \(name)", configuration: micro) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(PathNormalizer.normalizeTarget(target))
            }
        }
    }

    // MARK: JWT verification
    for algorithm in JWSAlgorithm.allCases {
        Benchmark("TokenVerifier.verify \(algorithm) uncached", configuration: single) { benchmark, fixture in
            for _ in benchmark.scaledIterations {
                blackHole(
                    TokenVerifier.verify(
                        fixture.token,
                        keys: fixture.keys,
                        policy: fixture.policy,
                        audiences: ["app"],
                        now: fixture.now
                    )
                )
            }
        } setup: {
            try JWTFixture(algorithm: algorithm)
        }

        Benchmark("VerifiedTokenCache.lookup \(algorithm) hit", configuration: micro) { benchmark, fixture in
            var cache = fixture.cache
            for _ in benchmark.scaledIterations {
                blackHole(cache.lookup(token: fixture.token, audiences: ["app"], issuer: JWTFixture.issuer, now: fixture.now))
            }
        } setup: {
            try JWTFixture(algorithm: algorithm)
        }
    }

    // MARK: audit
    Benchmark("AuditChain.seal http.request", configuration: micro) { benchmark, fixture in
        var chain = AuditChain(instance: "bench-1")
        for _ in benchmark.scaledIterations {
            blackHole(chain.seal(fixture.event))
        }
    } setup: {
        AuditFixture()
    }
}

struct JWTFixture {
    static let issuer = "https://idp.example.com"
    let token: String
    let keys: JWKSet
    let policy: IssuerPolicy
    let now: Int64
    var cache = VerifiedTokenCache()

    init(algorithm: JWSAlgorithm) throws {
        self.now = Int64(Date().timeIntervalSince1970)
        // About 900 bytes, as in DESIGN.md's measurement: a realistic set of claims.
        let claims: [String: Any] = [
            "iss": Self.issuer, "aud": "app", "sub": "00u1a2b3c4d5e6f7g8h9", "email": "alice@example.com",
            "groups": ["admins", "data-platform", "airflow-users", "analytics", "on-call"],
            "iat": self.now, "exp": self.now + 3600, "nbf": self.now - 5, "jti": UUID().uuidString,
            "amr": ["pwd", "mfa"], "name": "Alice Example", "preferred_username": "alice",
            "scope": "openid profile email groups offline_access airflow:read airflow:write",
        ]
        let header: [String: Any] = ["alg": algorithm.rawValue, "typ": "JWT", "kid": "k1"]
        let input =
            Self.b64url(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) + "."
            + Self.b64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let jwk: JWK
        let signature: Data
        let message = Data(input.utf8)
        switch algorithm {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512:
            let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
            let primitives = try key.publicKey.getKeyPrimitives()
            jwk = try JWK(rsaModulus: Array(primitives.modulus), exponent: Array(primitives.publicExponent), keyID: "k1")
            let padding: _RSA.Signing.Padding = algorithm.rawValue.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            switch algorithm {
            case .RS384, .PS384: signature = try key.signature(for: SHA384.hash(data: message), padding: padding).rawRepresentation
            case .RS512, .PS512: signature = try key.signature(for: SHA512.hash(data: message), padding: padding).rawRepresentation
            default: signature = try key.signature(for: SHA256.hash(data: message), padding: padding).rawRepresentation
            }
        case .ES256:
            let key = P256.Signing.PrivateKey()
            let raw = Array(key.publicKey.rawRepresentation)
            jwk = try JWK(ecKeyType: .ecP256, x: Array(raw[0..<32]), y: Array(raw[32..<64]), keyID: "k1")
            signature = try key.signature(for: message).rawRepresentation
        case .ES384:
            let key = P384.Signing.PrivateKey()
            let raw = Array(key.publicKey.rawRepresentation)
            jwk = try JWK(ecKeyType: .ecP384, x: Array(raw[0..<48]), y: Array(raw[48..<96]), keyID: "k1")
            signature = try key.signature(for: message).rawRepresentation
        case .EdDSA:
            let key = Curve25519.Signing.PrivateKey()
            jwk = try JWK(ed25519PublicKey: Array(key.publicKey.rawRepresentation), keyID: "k1")
            signature = try key.signature(for: message)
        }
        self.token = input + "." + Self.b64url(signature)
        self.keys = JWKSet(keys: [jwk])
        self.policy = IssuerPolicy(issuer: Self.issuer, algorithms: Set(JWSAlgorithm.allCases))
        guard case .valid(let verified) = TokenVerifier.verify(
            self.token,
            keys: self.keys,
            policy: self.policy,
            audiences: ["app"],
            now: self.now
        ) else {
            preconditionFailure("the benchmark token does not verify")
        }
        self.cache.insert(token: self.token, audiences: ["app"], issuer: Self.issuer, verified: verified, now: self.now)
    }

    static func b64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

struct AuditFixture {
    let event: AuditEvent

    init() {
        let principal = Principal(
            issuer: "https://idp.example.com",
            subject: "00u1a2b3c4d5e6f7g8h9",
            email: "alice@example.com",
            groups: ["admins", "data-platform", "airflow-users"]
        )
        let record = HTTPRequestRecord(
            requestID: "5e5a5d9e2231225b7a3cafd4618704d2",
            listener: "web",
            route: "airflow-api",
            decision: .allow,
            reason: "allowed",
            rule: 1,
            identity: AuditIdentity(principal: principal),
            clientAddress: "10.12.0.17",
            clientPort: 53122,
            tlsVersion: "TLSv1.3",
            sni: "airflow.example.com",
            method: "GET",
            host: "airflow.example.com",
            path: "/api/v1/dags/example_dag/dagRuns",
            query: "limit=25&offset=REDACTED",
            status: 200,
            bytesIn: 0,
            bytesOut: 1834,
            timeToFirstByteMicros: 812,
            durationMicros: 1204,
            upstream: "10.12.3.4:8080",
            userAgent: "python-requests/2.31.0"
        )
        self.event = AuditEvent(
            kind: AuditKind.httpRequest,
            time: AuditTime(microseconds: 1_795_000_000_123_456),
            payload: .request(record)
        )
    }
}
