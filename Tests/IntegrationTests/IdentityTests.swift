import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A proxy whose issuer discovers its keys from a JWKS server in the test process.
final class IdentityEnvironment: @unchecked Sendable {
    let idp: TestUpstream  // discovery + JWKS + the upstream service
    let proxy: ProxyProcess
    let port: Int
    let adminPort: Int
    /// The audit file (a file sink; authentication failures limited to 2/s, bursts of 3).
    let auditDir: URL
    var auditPath: String { self.auditDir.appendingPathComponent("audit.jsonl").path }
    var issuer: String { "http://127.0.0.1:\(self.idp.port)" }
    var base: String { "http://127.0.0.1:\(self.port)" }

    init(signers: [TestSigner], unknownKidInterval: String = "1s", extraIssuers: String = "", extraRoutes: String = "")
        async throws
    {
        self.idp = try await TestUpstream(name: "idp")
        let issuer = "http://127.0.0.1:\(self.idp.port)"
        self.idp.serveIssuer(signers: signers)
        self.port = try freePort()
        self.adminPort = try freePort()
        self.auditDir = try makeTempDir()
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - { name: web, address: "127.0.0.1:\(self.port)", protocol: http }
              - { name: ops, address: "127.0.0.1:\(self.adminPort)", protocol: admin }
            issuers:
              - name: idp
                issuer: \(issuer)
                audiences: [app]
                unknown_kid_interval: \(unknownKidInterval)
              - name: idp-uncached
                issuer: \(issuer)
                audiences: [app]
                token_cache: off
            \(extraIssuers)
            routes:
              - name: app
                listener: web
                match: { path: /* }
                upstream: http://127.0.0.1:\(self.idp.port)
                auth: { issuers: [idp] }
                identity_headers: { X-Auth-Email: "${email}", X-Auth-Groups: "${groups}" }
                rules:
                  - allow: { groups: [admins] }
                  - allow: { methods: [GET] }
              - name: other
                listener: web
                match: { path: /other/* }
                upstream: http://127.0.0.1:\(self.idp.port)
                auth: { issuers: [idp], audiences: [other] }
                rules: [ { allow: { authenticated: true } } ]
              - name: uncached
                listener: web
                match: { path: /uncached/* }
                upstream: http://127.0.0.1:\(self.idp.port)
                auth: { issuers: [idp-uncached] }
                rules: [ { allow: { authenticated: true } } ]
            \(extraRoutes.replacingOccurrences(of: "UPSTREAM", with: "http://127.0.0.1:\(self.idp.port)"))
            audit:
              auth_failure_limit: { rate: 2, burst: 3 }
              sinks: [{ type: file, path: \(self.auditDir.path)/audit.jsonl }]
            """
        self.proxy = try ProxyProcess(config: policy, waitPort: self.port)
        try waitForPort(self.adminPort)
    }

    func waitReady(timeout: TimeInterval = 15) -> Bool {
        eventually(timeout: timeout) {
            (try? curl(["--max-time", "2", "http://127.0.0.1:\(self.adminPort)/readyz"]))?.status == 200
        }
    }

    func metric(_ name: String) throws -> Int {
        let text = try curl(["http://127.0.0.1:\(self.adminPort)/metrics"]).body
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Int(line.split(separator: " ")[1]) ?? -1
        }
        return -1
    }

    func get(_ path: String, token: String?, headers: [String] = []) throws -> CurlResult {
        var arguments: [String] = []
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        for header in headers { arguments += ["-H", header] }
        return try curl(arguments + ["\(self.base)\(path)"])
    }

    func stop() {
        self.proxy.stop()
        self.idp.stop()
        try? FileManager.default.removeItem(at: self.auditDir)
    }
}

func reason(of result: CurlResult) -> String? {
    (try? JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any])?["reason"] as? String
}

@Suite("identity end to end: OIDC discovery, JWKS, bearer tokens", .serialized)
struct IdentityTests {
    @Test("a valid token is admitted; identity headers are set by the proxy and the token is not forwarded")
    func validToken() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let env = try await IdentityEnvironment(signers: [signer])
        defer { env.stop() }
        #expect(env.waitReady())
        let token = try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        let result = try env.get("/reports", token: token, headers: ["X-Auth-Email: ceo@example.com", "X_Auth_Groups: all"])
        #expect(result.status == 200)
        let seen = try #require(env.idp.requests.last { $0.uri == "/reports" })
        #expect(seen.header("x-auth-email") == ["alice@example.com"])
        #expect(seen.header("x-auth-groups") == ["admins"])
        #expect(seen.header("x_auth_groups").isEmpty)
        #expect(seen.header("authorization").isEmpty)

        // A POST by a non-admin: no rule allows it (403); a GET is allowed.
        let viewer = try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "app", groups: ["viewers"]))
        let post = try curl(["-X", "POST", "-H", "Authorization: Bearer \(viewer)", "--data", "x", "\(env.base)/dags"])
        #expect(post.status == 403)
        #expect(reason(of: post) == "no_rule_matched")
        #expect(try env.get("/dags", token: viewer).status == 200)
    }

    @Test("attacks are refused with 401 and the right reason; the token is never echoed")
    func attackTable() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let rsa = try TestSigner.rs256(kid: "r1")
        let env = try await IdentityEnvironment(signers: [signer, rsa])
        defer { env.stop() }
        #expect(env.waitReady())
        let attacker = try await TestUpstream(name: "attacker")
        defer { attacker.stop() }
        let good = TestSigner.claims(iss: env.issuer, aud: "app")
        let untrusted = TestSigner.es256(kid: "k1")  // a different key claiming a trusted kid
        let cases: [(String, String, String)] = [
            ("expired", try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "app", exp: Int(Date().timeIntervalSince1970) - 3600)), "token_expired"),
            ("wrong audience", try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "billing")), "token_audience_mismatch"),
            ("wrong issuer", try signer.token(claims: TestSigner.claims(iss: "https://evil.example", aud: "app")), "token_issuer_not_accepted"),
            ("alg none", try AttackTokens.none(claims: good), "token_algorithm_not_allowed"),
            ("alg NONE", try AttackTokens.none(claims: good, alg: "NONE"), "token_algorithm_not_allowed"),
            ("HS256 with the RSA public key", try AttackTokens.hs256(claims: good, secret: Data(rsa.publicKeyPEM.utf8), kid: "r1"), "token_algorithm_not_allowed"),
            ("untrusted key, trusted kid", try untrusted.token(claims: good), "token_signature_invalid"),
            ("jku to an attacker", try untrusted.token(claims: good, header: ["jku": "http://127.0.0.1:\(attacker.port)/jwks"]), "token_signature_invalid"),
            ("duplicate aud", "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0." + b64url(Data(#"{"aud":"evil","aud":"app"}"#.utf8)) + ".AAAA", "token_malformed"),
            ("9 KiB (over max_token_size, under the header limit)", String(repeating: "a", count: 9 * 1024), "token_too_large"),
        ]
        for (name, token, expected) in cases {
            let result = try env.get("/x", token: token)
            #expect(result.status == 401, "\(name)")
            #expect(reason(of: result) == expected, "\(name): \(result.body)")
            #expect(result.header("www-authenticate")?.contains(#"error="invalid_token""#) == true, "\(name)")
            #expect(!result.body.contains(token.prefix(40)), "\(name)")
        }
        // A token for another route's audience opens no other route (and vice versa).
        let forApp = try signer.token(claims: good)
        #expect(try env.get("/other/x", token: forApp).status == 401)
        let forOther = try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "other"))
        #expect(try env.get("/other/x", token: forOther).status == 200)
        #expect(try env.get("/x", token: forOther).status == 401)
        // The attacker's JWKS URL was never fetched.
        #expect(attacker.requests.isEmpty)
        // No credentials at all: a bare challenge.
        let bare = try env.get("/x", token: nil)
        #expect(bare.status == 401)
        #expect(bare.header("www-authenticate") == #"Bearer realm="portcullis""#)
        #expect(env.idp.requests.filter { $0.uri == "/x" }.isEmpty)
    }

    @Test("tokens from a configured header or cookie, never from the query; forward_token passes Authorization on")
    func tokenSources() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let env = try await IdentityEnvironment(
            signers: [signer],
            extraRoutes: """
                  - name: sources
                    listener: web
                    match: { path: /sources/* }
                    upstream: UPSTREAM
                    auth: { issuers: [idp], token_header: X-Api-Token, token_cookie: session }
                    rules: [ { allow: { authenticated: true } } ]
                  - name: forwarding
                    listener: web
                    match: { path: /forwarding/* }
                    upstream: UPSTREAM
                    forward_token: true
                    auth: { issuers: [idp] }
                    rules: [ { allow: { authenticated: true } } ]
                """
        )
        defer { env.stop() }
        #expect(env.waitReady())
        let token = try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        #expect(try env.get("/sources/header", token: nil, headers: ["X-Api-Token: \(token)"]).status == 200)
        #expect(try env.get("/sources/cookie", token: nil, headers: ["Cookie: theme=dark; session=\(token)"]).status == 200)
        // The credentials are not forwarded; other cookies are.
        let header = try #require(env.idp.requests.last { $0.uri == "/sources/header" })
        #expect(header.header("x-api-token").isEmpty)
        let cookie = try #require(env.idp.requests.last { $0.uri == "/sources/cookie" })
        #expect(cookie.header("cookie") == ["theme=dark"])
        // Never from the query string.
        let query = try env.get("/sources/query?access_token=\(token)", token: nil)
        #expect(query.status == 401)
        #expect(reason(of: query) == "unauthenticated")
        // forward_token: the upstream sees the client's Authorization header.
        #expect(try env.get("/forwarding/x", token: token).status == 200)
        let forwarded = try #require(env.idp.requests.last { $0.uri == "/forwarding/x" })
        #expect(forwarded.header("authorization") == ["Bearer \(token)"])
    }

    @Test("no token, valid or not, ever appears in the proxy's log (trace level)")
    func noSecretsInLogs() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let env = try await IdentityEnvironment(signers: [signer])
        defer { env.stop() }
        #expect(env.waitReady())
        let valid = try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        let expired = try signer.token(
            claims: TestSigner.claims(iss: env.issuer, aud: "app", exp: Int(Date().timeIntervalSince1970) - 60)
        )
        let forged = try TestSigner.es256(kid: "k1").token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        #expect(try env.get("/a", token: valid).status == 200)
        #expect(try env.get("/b", token: expired).status == 401)
        #expect(try env.get("/c", token: forged).status == 401)
        #expect(try env.get("/d", token: nil, headers: ["Authorization: Bearer not!a!token"]).status == 401)
        let log = env.proxy.log
        #expect(!log.isEmpty)
        for secret in [valid, expired, forged, "not!a!token"] {
            // Any recognisable part of a token (its signature) must not be logged.
            #expect(!log.contains(String(secret.split(separator: ".").last ?? Substring(secret))))
        }
    }

    @Test("claims with CR/LF cannot split identity headers")
    func headerInjection() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let env = try await IdentityEnvironment(signers: [signer])
        defer { env.stop() }
        #expect(env.waitReady())
        let token = try signer.token(
            claims: TestSigner.claims(iss: env.issuer, aud: "app", email: "a@x\r\nX-Injected: yes")
        )
        #expect(try env.get("/inject", token: token).status == 200)
        let seen = try #require(env.idp.requests.last { $0.uri == "/inject" })
        #expect(seen.header("x-injected").isEmpty)
        #expect(seen.header("x-auth-email") == ["a@x%0D%0AX-Injected: yes"])
    }

    @Test("token cache: a repeated token is verified once; token_cache: off verifies every request")
    func tokenCache() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let env = try await IdentityEnvironment(signers: [signer])
        defer { env.stop() }
        #expect(env.waitReady())
        let token = try signer.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        let client = try RawClient(port: env.port)  // one connection: one event loop, one cache
        let before = try env.metric("portcullis_token_verifications_total")
        for _ in 0..<10 {
            try client.send("GET /cached HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(client.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        }
        #expect(try env.metric("portcullis_token_verifications_total") - before == 1)
        for _ in 0..<10 {
            try client.send("GET /uncached/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(token)\r\n\r\n")
            #expect(client.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        }
        #expect(try env.metric("portcullis_token_verifications_total") - before == 11)
    }

    @Test("key rotation: a new kid is accepted after one refetch while the request waits; a removed key is refused")
    func rotation() async throws {
        let a = TestSigner.es256(kid: "a")
        let b = TestSigner.es256(kid: "b")
        let env = try await IdentityEnvironment(signers: [a])
        defer { env.stop() }
        #expect(env.waitReady())
        let tokenA = try a.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        #expect(try env.get("/r", token: tokenA).status == 200)
        let fetchesBefore = env.idp.requestCount(path: "/jwks")

        // The IdP rotates: b appears. The first token with kid b triggers one refetch and is admitted.
        env.idp.setResponse(path: "/jwks", body: TestSigner.jwks([a, b]))
        usleep(1_100_000)  // past unknown_kid_interval (1 s) since the start-up fetch
        let tokenB = try b.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        #expect(try env.get("/r", token: tokenB).status == 200)
        #expect(env.idp.requestCount(path: "/jwks") == fetchesBefore + 1)

        // a is removed; the next refetch (another unknown kid) drops it: tokens signed by a stop working.
        env.idp.setResponse(path: "/jwks", body: TestSigner.jwks([b]))
        usleep(1_100_000)
        let stranger = TestSigner.es256(kid: "c")
        let tokenC = try stranger.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        let unknown = try env.get("/r", token: tokenC)
        #expect(unknown.status == 401)
        #expect(reason(of: unknown) == "token_unknown_key")
        let removed = try env.get("/r", token: tokenA)
        #expect(removed.status == 401)
        #expect(try env.get("/r", token: tokenB).status == 200)
    }

    @Test("a flood of random kids costs at most one fetch; a JWKS server that fails keeps the last good keys")
    func floodAndOutage() async throws {
        let a = TestSigner.es256(kid: "a")
        let env = try await IdentityEnvironment(signers: [a], unknownKidInterval: "30s")
        defer { env.stop() }
        #expect(env.waitReady())
        let fetchesBefore = env.idp.requestCount(path: "/jwks")
        let client = try RawClient(port: env.port)
        for i in 0..<1000 {
            let random = TestSigner(key: a.key, kid: "random-\(i)-\(UInt64.random(in: 0...UInt64.max))")
            let token = try random.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
            try client.send("GET /flood HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \(token)\r\n\r\n")
            let response = client.readResponses(1, timeout: 5).first
            #expect(response?.hasPrefix("HTTP/1.1 401") == true)
            if response == nil { break }
        }
        #expect(env.idp.requestCount(path: "/jwks") - fetchesBefore <= 1)

        // The JWKS endpoint breaks: the last good keys keep working.
        env.idp.setResponse(path: "/jwks", status: 500, body: "{}")
        let token = try a.token(claims: TestSigner.claims(iss: env.issuer, aud: "app"))
        #expect(try env.get("/still", token: token).status == 200)
    }

    @Test("an issuer whose keys never loaded fails closed with 503 and Retry-After; /readyz says which")
    func neverLoaded() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let dead = try freePort()
        let env = try await IdentityEnvironment(
            signers: [signer],
            extraIssuers: """
                  - name: down
                    issuer: http://127.0.0.1:\(dead)
                    audiences: [down]
                """,
            extraRoutes: """
                  - name: down
                    listener: web
                    match: { path: /down/* }
                    upstream: http://127.0.0.1:\(dead)
                    auth: { issuers: [down] }
                """
        )
        defer { env.stop() }
        let token = try signer.token(claims: TestSigner.claims(iss: "http://127.0.0.1:\(dead)", aud: "down"))
        let result = try env.get("/down/x", token: token)
        #expect(result.status == 503)
        #expect(reason(of: result) == "issuer_keys_unavailable")
        #expect(result.header("retry-after") != nil)
        let ready = try curl(["http://127.0.0.1:\(env.adminPort)/readyz"])
        #expect(ready.status == 503)
        #expect(ready.body.contains("down"))
    }
}
