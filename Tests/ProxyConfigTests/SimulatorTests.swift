import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("policy simulator and test files (explain, test)")
struct SimulatorTests {
    static let policy = """
        version: 1
        listeners:
          - { name: web, address: "127.0.0.1:8080", protocol: http }
          - name: mtls
            address: "127.0.0.1:8443"
            protocol: https
            tls: { certificates: [{ certificate: s.pem, private_key: k.pem }], client_ca: ca.pem, client_auth: optional }
        issuers:
          - { name: corp, issuer: "https://corp.example.com", audiences: [airflow] }
        routes:
          - name: health
            listener: web
            match: { host: airflow.example.com, path: /health }
            upstream: http://a
            public: true
          - name: admin
            listener: web
            match: { host: airflow.example.com, path: /admin/* }
            upstream: http://a
            auth: { issuers: [corp] }
            rules:
              - deny: { methods: [DELETE] }
              - allow: { groups: [admins], paths: [/users/*] }
          - name: jobs
            listener: mtls
            match: { host: jobs.example.com }
            upstream: http://a
            auth: { client_cert: required }
            rules:
              - allow: { client_cert: { spiffe_ids: ["spiffe://example.com/ns/jobs/*"] } }

        """

    static var simulator: PolicySimulator {
        let parsed = ConfigLoader.parse(yaml: policy, file: "p.yaml", baseDirectory: "/", options: .init(checkFiles: false))
        guard case .success(let loaded) = parsed else { fatalError("test policy does not load: \(parsed)") }
        return PolicySimulator(config: loaded.config)
    }

    static func request(_ method: String, _ url: String) -> SimulatedRequest {
        SimulatedRequest(method: method, url: url, time: 1_795_000_000)
    }

    static func bearer(groups: [String]) -> SimulatedIdentity {
        SimulatedIdentity(bearer: { _ in .success(Principal(issuer: "https://corp.example.com", subject: "a", groups: groups)) })
    }

    @Test func routesOnTheNormalizedPathAndExplains() {
        // The dot-segment is removed before routing and policy: /health/../admin/users/1 is /admin/users/1.
        let result = Self.simulator.simulate(
            Self.request("GET", "http://airflow.example.com/health/%2e%2e/admin/users/1"),
            identity: Self.bearer(groups: ["admins"])
        )
        #expect(result.route?.name == "admin")
        #expect(result.path == "/admin/users/1")
        #expect(result.allowed)
        #expect(result.decidingRule == 1)
        #expect(result.explanation?.lines.count == 2)
    }

    @Test func outcomes() {
        let simulator = Self.simulator
        // 401 before rules: no identity.
        let anonymous = simulator.simulate(Self.request("GET", "http://airflow.example.com/admin/users"), identity: .anonymous)
        #expect(anonymous.status == 401)
        #expect(anonymous.reason == .unauthenticated)
        // 403 by rule, and by no rule.
        let delete = simulator.simulate(Self.request("DELETE", "http://airflow.example.com/admin/users/1"), identity: Self.bearer(groups: ["admins"]))
        #expect(delete.status == 403)
        #expect(delete.reason == .deniedByRule)
        #expect(delete.decidingRule == 0)
        let viewer = simulator.simulate(Self.request("GET", "http://airflow.example.com/admin/users/1"), identity: Self.bearer(groups: ["viewers"]))
        #expect(viewer.reason == .noRuleMatched)
        #expect(viewer.explanation?.lines.last == "rules[1] (allow, line 23): failed groups: any of [admins]")
        // A refused token is a 401 with the token's reason.
        let refused = simulator.simulate(
            Self.request("GET", "http://airflow.example.com/admin/users/1"),
            identity: SimulatedIdentity(bearer: { _ in .failure(SimulatedRejection(.tokenAudienceMismatch, "aud")) })
        )
        #expect(refused.status == 401)
        #expect(refused.reason == .tokenAudienceMismatch)
        #expect(refused.explanation == nil)
        // Public route: allowed without identity.
        #expect(simulator.simulate(Self.request("GET", "http://airflow.example.com/health"), identity: .anonymous).allowed)
        // No route, and a refused URL.
        #expect(simulator.simulate(Self.request("GET", "http://other.example.com/"), identity: .anonymous).reason == .routeNotFound)
        #expect(simulator.simulate(Self.request("GET", "http://airflow.example.com/%2e%2e/%2e%2e/x"), identity: .anonymous).status == 400)
        #expect(simulator.simulate(Self.request("GET", "ftp://airflow.example.com/"), identity: .anonymous).status == 400)
    }

    @Test func clientCertificates() {
        let simulator = Self.simulator
        let missing = simulator.simulate(Self.request("GET", "https://jobs.example.com/run"), identity: .anonymous)
        #expect(missing.reason == .clientCertificateRequired)
        let worker = ClientCertificateIdentity(subject: "CN=w", commonName: "w", uriSANs: ["spiffe://example.com/ns/jobs/sa/w"])
        #expect(simulator.simulate(Self.request("GET", "https://jobs.example.com/run"), identity: .init(clientCertificate: worker)).allowed)
        let other = ClientCertificateIdentity(subject: "CN=w", commonName: "w", uriSANs: ["spiffe://example.com/ns/batch/sa/w"])
        let denied = simulator.simulate(Self.request("GET", "https://jobs.example.com/run"), identity: .init(clientCertificate: other))
        #expect(denied.reason == .noRuleMatched)
    }

    // MARK: test files

    @Test func testFileParsesAndChecks() throws {
        let yaml = """
            tests:
              - name: admins manage users
                request: { method: post, url: "http://airflow.example.com/admin/users/1", client_ip: 10.0.0.1, time: "2026-11-23T10:00:00+01:00" }
                identity: { issuer: corp, claims: { sub: alice, groups: [admins], amr: [pwd, mfa], level: 2 } }
                expect: allow
              - name: delete is denied
                request: { method: DELETE, url: "http://airflow.example.com/admin/users/1" }
                identity: { claims: { sub: alice, groups: [admins] } }
                expect: { decision: deny, status: 403, reason: denied_by_rule, route: admin, rule: 0 }
              - name: anonymous
                request: { url: "http://airflow.example.com/admin/" }
                expect: unauthenticated

            """
        guard case .success(let suite) = PolicyTestSuite.parse(yaml: yaml, file: "t.yaml") else {
            Issue.record("test file did not parse: \(PolicyTestSuite.parse(yaml: yaml, file: "t.yaml"))")
            return
        }
        #expect(suite.cases.count == 3)
        let first = suite.cases[0]
        #expect(first.method == "POST")
        #expect(first.time == 1_795_424_400)
        #expect(first.clientAddress == IPAddress.parse("10.0.0.1"))
        #expect(first.issuer == "corp")
        #expect(first.claims?["amr"] == .array([.string("pwd"), .string("mfa")]))
        #expect(first.claims?["level"] == .integer(2))
        #expect(first.expect == PolicyExpectation(allowed: true))
        #expect(suite.cases[1].expect == PolicyExpectation(allowed: false, status: 403, reason: "denied_by_rule", route: "admin", rule: 0))
        #expect(suite.cases[2].method == "GET")
        #expect(suite.cases[2].location.line == 10)

        // The expectation check names what differs.
        let simulator = Self.simulator
        let allowed = simulator.simulate(Self.request("GET", "http://airflow.example.com/admin/users/1"), identity: Self.bearer(groups: ["admins"]))
        #expect(suite.cases[0].expect.check(allowed).isEmpty)
        let problems = suite.cases[1].expect.check(allowed)
        #expect(problems.contains { $0.hasPrefix("expected a refusal, got allow (200)") }, "\(problems)")
        #expect(problems.contains { $0.hasPrefix("expected rules[0] to decide, got rules[1]") }, "\(problems)")
    }

    @Test func testFileErrorsHaveLocations() {
        let yaml = """
            tests:
              - name: a
                request: { url: "airflow.example.com/", client_ip: 10.0.0.999, time: "tomorrow", methd: GET }
                expect: alow
              - name: a
                request: { url: "http://x/" }
                expect: { status: 700, reason: no_such_reason }

            """
        guard case .failure(let error) = PolicyTestSuite.parse(yaml: yaml, file: "t.yaml") else {
            Issue.record("a broken test file parsed")
            return
        }
        let lines = error.diagnostics.map(\.description)
        for expected in [
            "t.yaml:3:21: error: tests[0].request.url: expected an absolute http:// or https:// URL",
            "t.yaml:3:56: error: tests[0].request.client_ip: '10.0.0.999' is not an IP address",
            "t.yaml:3:74: error: tests[0].request.time: 'tomorrow' is not an RFC 3339 time",
            "t.yaml:3:86: error: unknown key 'methd' in tests[0].request (did you mean 'method'?)",
            "t.yaml:4:13: error: tests[0].expect: 'alow' is not an expectation",
            "t.yaml:5:11: error: tests[1].name: duplicate test name 'a'",
            "t.yaml:7:23: error: tests[1].expect.status",
            "t.yaml:7:36: error: tests[1].expect.reason: unknown reason code 'no_such_reason'",
        ] {
            #expect(lines.contains { $0.hasPrefix(expected) }, "missing \(expected) in:\n\(lines.joined(separator: "\n"))")
        }
    }
}
