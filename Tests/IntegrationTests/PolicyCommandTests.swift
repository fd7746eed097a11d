import Foundation
import Testing

/// `portcullis explain`, `portcullis test` and `check --strict`, run as the operator runs them.
@Suite("policy tools: explain, test, check --strict")
struct PolicyCommandTests {
    /// A policy with a static JWKS file, so that explain verifies real tokens offline.
    static func writePolicy(in dir: URL, signer: TestSigner) throws -> URL {
        try TestSigner.jwks([signer]).write(to: dir.appendingPathComponent("jwks.json"), atomically: true, encoding: .utf8)
        let policy = dir.appendingPathComponent("policy.yaml")
        try """
        version: 1
        listeners:
          - { name: web, address: 127.0.0.1:8080, protocol: http }
        issuers:
          - { name: corp, issuer: "https://idp.test", audiences: [airflow], jwks_file: jwks.json, algorithms: [ES256] }
        definitions:
          admins: { groups: [airflow-admins] }
          office: { source_cidrs: [10.0.0.0/8] }
        routes:
          - name: health
            listener: web
            match: { host: airflow.example.com, path: /health }
            upstream: http://127.0.0.1:9
            public: true
          - name: ui
            listener: web
            match: { host: airflow.example.com, path: /* }
            upstream: http://127.0.0.1:9
            auth: { issuers: [corp] }
            rules:
              - allow: { use: admins, methods: [GET, HEAD] }
              - allow: { use: admins, claims: { amr: mfa } }
              - deny: { time: { days: [sat, sun] }, groups: [airflow-viewers] }
              - allow: { groups: [airflow-viewers], methods: [GET, HEAD], use: office }
        """.write(to: policy, atomically: true, encoding: .utf8)
        return policy
    }

    @Test("explain: a real token is verified; every rule tried is shown with the condition that failed; exit 0/1/2")
    func explain() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let signer = TestSigner.es256(kid: "k1")
        let policy = try Self.writePolicy(in: dir, signer: signer)

        var claims = TestSigner.claims(iss: "https://idp.test", aud: "airflow", groups: ["airflow-admins"])
        claims["amr"] = ["pwd"]
        let noMFA = try signer.token(claims: claims)
        let post = try run(binary, ["explain", "--config", policy.path, "--method", "POST", "--url", "https://airflow.example.com/api/v1/dags", "--token", noMFA])
        #expect(post.status == 1, "\(post.stdout)\(post.stderr)")
        #expect(post.stdout.contains("route:     ui"), "\(post.stdout)")
        #expect(post.stdout.contains("rules[0] (allow, line 21): failed methods: any of [GET, HEAD]"), "\(post.stdout)")
        #expect(post.stdout.contains("rules[1] (allow, line 22): failed claims.amr: any of [\"mfa\"]"), "\(post.stdout)")
        #expect(post.stdout.contains("decision:  deny: 403 no_rule_matched"), "\(post.stdout)")
        // The token itself never appears in the output.
        #expect(!post.stdout.contains(noMFA))

        claims["amr"] = ["pwd", "mfa"]
        let withMFA = try signer.token(claims: claims)
        let allowed = try run(binary, ["explain", "--config", policy.path, "--method", "POST", "--url", "https://airflow.example.com/api/v1/dags", "--token", withMFA])
        #expect(allowed.status == 0, "\(allowed.stdout)\(allowed.stderr)")
        #expect(allowed.stdout.contains("rules[1] (allow, line 22): matched"), "\(allowed.stdout)")

        // Attack: the same claims signed by another key are refused before any rule runs.
        let forged = try TestSigner.es256(kid: "k1").token(claims: claims)
        let refused = try run(binary, ["explain", "--config", policy.path, "--method", "POST", "--url", "https://airflow.example.com/x", "--token", forged])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("401 token_signature_invalid"), "\(refused.stdout)")
        #expect(!refused.stdout.contains("rules["), "\(refused.stdout)")

        // Claims without a token, a time for the weekend rule (2026-11-21 is a Saturday), no identity.
        let weekend = try run(binary, [
            "explain", "--config", policy.path, "--url", "https://airflow.example.com/home",
            "--claims", #"{"sub":"v","groups":["airflow-viewers"]}"#, "--time", "2026-11-21T12:00:00Z",
        ])
        #expect(weekend.status == 1, "\(weekend.stdout)")
        #expect(weekend.stdout.contains("rules[2] (deny, line 23): matched"), "\(weekend.stdout)")
        let weekday = try run(binary, [
            "explain", "--config", policy.path, "--url", "https://airflow.example.com/home",
            "--claims", #"{"sub":"v","groups":["airflow-viewers"]}"#, "--time", "2026-11-23T12:00:00Z", "--client-ip", "10.1.2.3",
        ])
        #expect(weekday.status == 0, "\(weekday.stdout)")
        // Outside the office network the definition fails, and explain says why.
        let outside = try run(binary, [
            "explain", "--config", policy.path, "--url", "https://airflow.example.com/home",
            "--claims", #"{"sub":"v","groups":["airflow-viewers"]}"#, "--time", "2026-11-23T12:00:00Z", "--client-ip", "192.0.2.1",
        ])
        #expect(outside.status == 1, "\(outside.stdout)")
        #expect(
            outside.stdout.contains("rules[3] (allow, line 24): failed use: any of [office] (office: failed source_cidrs: any of [10.0.0.0/8])"),
            "\(outside.stdout)"
        )
        let anonymous = try run(binary, ["explain", "--config", policy.path, "--url", "https://airflow.example.com/home"])
        #expect(anonymous.status == 1)
        #expect(anonymous.stdout.contains("401 unauthenticated"), "\(anonymous.stdout)")
        let health = try run(binary, ["explain", "--config", policy.path, "--url", "https://airflow.example.com/health"])
        #expect(health.status == 0, "\(health.stdout)")

        // Errors: exit 2.
        #expect(try run(binary, ["explain", "--config", policy.path, "--url", "https://a/", "--claims", "[1]"]).status == 2)
        #expect(try run(binary, ["explain", "--config", policy.path, "--url", "https://a/", "--client-ip", "999.1.1.1"]).status == 2)
        #expect(try run(binary, ["explain", "--config", dir.appendingPathComponent("missing.yaml").path, "--url", "https://a/"]).status == 2)
    }

    @Test("test: user-written policy tests pass, a wrong expectation fails with the reason, a broken file exits 2")
    func policyTests() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = try Self.writePolicy(in: dir, signer: TestSigner.es256(kid: "k1"))
        let tests = dir.appendingPathComponent("policy.test.yaml")
        try """
        tests:
          - name: admins read
            request: { url: "https://airflow.example.com/home" }
            identity: { claims: { sub: a, groups: [airflow-admins] } }
            expect: { decision: allow, rule: 0 }
          - name: admin writes need MFA
            request: { method: POST, url: "https://airflow.example.com/api/v1/dags" }
            identity: { claims: { sub: a, groups: [airflow-admins], amr: [pwd] } }
            expect: { status: 403, reason: no_rule_matched }
          - name: wrong audience is a 401
            request: { url: "https://airflow.example.com/home" }
            identity: { claims: { sub: a, aud: other, groups: [airflow-admins] } }
            expect: { status: 401, reason: token_audience_mismatch }
          - name: anonymous
            request: { url: "https://airflow.example.com/home" }
            expect: unauthenticated
        """.write(to: tests, atomically: true, encoding: .utf8)
        let pass = try run(binary, ["test", "--config", policy.path, tests.path])
        #expect(pass.status == 0, "\(pass.stdout)\(pass.stderr)")
        #expect(pass.stdout.contains("4 passed, 0 failed"), "\(pass.stdout)")

        // A policy change that breaks an expectation is caught: MFA no longer required.
        let loosened = try String(contentsOf: policy, encoding: .utf8)
            .replacingOccurrences(of: "- allow: { use: admins, claims: { amr: mfa } }", with: "- allow: { use: admins }")
        try loosened.write(to: policy, atomically: true, encoding: .utf8)
        let fail = try run(binary, ["test", "--config", policy.path, tests.path])
        #expect(fail.status == 1, "\(fail.stdout)")
        #expect(fail.stdout.contains("FAIL admin writes need MFA"), "\(fail.stdout)")
        #expect(fail.stdout.contains("expected status 403, got allow (200)"), "\(fail.stdout)")
        #expect(fail.stdout.contains("3 passed, 1 failed"), "\(fail.stdout)")

        let broken = dir.appendingPathComponent("broken.test.yaml")
        try "tests:\n  - name: x\n    request: { url: \"https://a/\" }\n    expect: alow\n".write(to: broken, atomically: true, encoding: .utf8)
        let unreadable = try run(binary, ["test", "--config", policy.path, broken.path])
        #expect(unreadable.status == 2)
        #expect(unreadable.stdout.contains("\(broken.path):4:13: error:"), "\(unreadable.stdout)")
    }

    @Test("check --strict: warnings (a shadowed rule) fail; without --strict they are printed and pass")
    func strictCheck() throws {
        let binary = try portcullisBinary()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let policy = try Self.writePolicy(in: dir, signer: TestSigner.es256(kid: "k1"))
        #expect(try run(binary, ["check", "--config", policy.path, "--strict"]).status == 0)
        let shadowed = try String(contentsOf: policy, encoding: .utf8) + "\n      - deny: { groups: [airflow-viewers], methods: [GET], use: office }\n"
        try shadowed.write(to: policy, atomically: true, encoding: .utf8)
        let lenient = try run(binary, ["check", "--config", policy.path])
        #expect(lenient.status == 0)
        #expect(lenient.stdout.contains(":25:9: warning: routes[1].rules[4] (deny) never decides: rules[3]"), "\(lenient.stdout)")
        #expect(try run(binary, ["check", "--config", policy.path, "--strict"]).status == 1)
    }
}
