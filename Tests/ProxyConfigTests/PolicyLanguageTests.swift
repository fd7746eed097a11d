import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

/// The policy-issue additions to the file: claims, client_cert, time, definitions/use, explain_denials,
/// and the warnings of `check` (shadowed rules, allow-everyone, auth routes without rules).
@Suite("policy language: structured conditions, definitions and check warnings")
struct PolicyLanguageTests {
    /// The `auth` route of RuleTests: `rules:` on line 15 and `items` from line 16 (6 spaces in).
    func authRoute(_ items: String...) -> String {
        items.reduce(RuleTests().authRoute()) { $0 + "      \($1)\n" }
    }

    func rules(_ yaml: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> [Rule] {
        expectValid(yaml, sourceLocation: sourceLocation)?.config.routes.first?.rules ?? []
    }

    // MARK: claims

    @Test func claimsCompileToOneConditionPerClaim() {
        let parsed = self.rules(
            self.authRoute(
                #"- allow: { claims: { amr: mfa, "realm_access.roles": [admin, ops], email_verified: true, level: 3, acr: { exists: true }, "[https://example.com/roles]": "true" } }"#
            )
        )
        guard parsed.count == 1 else { return }
        let matchers = parsed[0].conditions.compactMap { condition -> ClaimMatcher? in
            if case .claim(let matcher) = condition { return matcher }
            return nil
        }
        #expect(matchers.map(\.path) == [["amr"], ["realm_access", "roles"], ["email_verified"], ["level"], ["acr"], ["https://example.com/roles"]])
        #expect(matchers[0].test == .anyOf([.string("mfa")]))
        #expect(matchers[1].test == .anyOf([.string("admin"), .string("ops")]))
        #expect(matchers[2].test == .anyOf([.bool(true)]))
        #expect(matchers[3].test == .anyOf([.integer(3)]))
        #expect(matchers[4].test == .exists(true))
        // Quoted: the text "true", not the boolean.
        #expect(matchers[5].test == .anyOf([.string("true")]))
    }

    @Test func claimErrorsNameLineAndKey() {
        expectDiagnostic(self.authRoute("- allow: { claims: { a..b: x } }"), line: 16, column: 28, "invalid claim path 'a..b'")
        expectDiagnostic(
            self.authRoute("- allow: { claims: { amr: null } }"),
            line: 16,
            column: 33,
            "routes[0].rules[0].allow.claims.amr: null never matches; use {exists: false}"
        )
        expectDiagnostic(
            self.authRoute("- allow: { claims: { amr: [] } }"),
            line: 16,
            column: 33,
            "routes[0].rules[0].allow.claims.amr: empty list"
        )
        expectDiagnostic(
            self.authRoute("- allow: { claims: { amr: { exist: true } } }"),
            line: 16,
            column: 35,
            "unknown key 'exist' in routes[0].rules[0].allow.claims.amr (did you mean 'exists'?)"
        )
        expectDiagnostic(
            self.authRoute("- allow: { claims: { amr: yes } }"),
            line: 16,
            column: 33,
            "routes[0].rules[0].allow.claims.amr"
        )
        expectDiagnostic(self.authRoute("- allow: { claims: {} }"), line: 16, column: 26, "name at least one claim")
    }

    // MARK: client_cert

    @Test func clientCertificateConditions() {
        let parsed = self.rules(
            self.authRoute(
                #"- allow: { client_cert: { spiffe_ids: ["spiffe://example.com/ns/jobs/sa/worker", "spiffe://example.com/ns/batch/*"], dns_sans: "*.Workers.example.com", subject_cn: worker, email_sans: [Ops@Example.com] } }"#
            )
        )
        #expect(
            parsed.first?.conditions == [
                .clientCert(.spiffeIDs([.exact("spiffe://example.com/ns/jobs/sa/worker"), .pathPrefix("spiffe://example.com/ns/batch/")])),
                .clientCert(.dnsSANs([.dnsWildcard(suffix: ".workers.example.com")])),
                .clientCert(.subjectCN(["worker"])),
                .clientCert(.emailSANs(["ops@example.com"])),
            ]
        )
    }

    @Test(arguments: [
        ("spiffe://Example.com/x", "trust domain must be lower-case"),
        ("spiffe://example.com", "names a trust domain, not a workload"),
        ("spiffe://example.com/ns//x", "invalid path segment ''"),
        ("spiffe://example.com/ns/../x", "invalid path segment '..'"),
        ("spiffe://example.com/ns/x?y", "invalid path segment 'x?y'"),
        ("https://example.com/x", "is not a SPIFFE ID"),
        ("spiffe://example.com/*/x", "invalid path segment '*'"),
    ])
    func invalidSPIFFEIDs(text: String, message: String) {
        expectDiagnostic(
            self.authRoute("- allow: { client_cert: { spiffe_ids: [\"\(text)\"] } }"),
            line: 16,
            column: 46,
            "routes[0].rules[0].allow.client_cert.spiffe_ids[0]: '\(text)'"
        )
        let found = diagnostics(self.authRoute("- allow: { client_cert: { spiffe_ids: [\"\(text)\"] } }"))
        #expect(found.contains { $0.message.contains(message) }, "\(found)")
    }

    @Test func unknownClientCertKey() {
        expectDiagnostic(
            self.authRoute("- allow: { client_cert: { spiffe_id: [\"spiffe://e.com/x\"] } }"),
            line: 16,
            column: 33,
            "unknown key 'spiffe_id' in routes[0].rules[0].allow.client_cert (did you mean 'spiffe_ids'?)"
        )
    }

    // MARK: time

    @Test func timeWindowWithZoneAndDayRanges() {
        let parsed = self.rules(
            self.authRoute(
                #"- deny: { time: { days: [mon-wed, fri, sat-sun], hours: ["22:00-06:00", "12:00-13:00"], timezone: Europe/Berlin }, groups: [x] }"#
            )
        )
        guard case .time(let window)? = parsed.first?.conditions.first else {
            Issue.record("no time condition: \(parsed)")
            return
        }
        #expect(window.days == [.monday, .tuesday, .wednesday, .friday, .saturday, .sunday])
        #expect(window.hours == [.init(start: 1320, end: 360), .init(start: 720, end: 780)])
        #expect(window.zone.name == "Europe/Berlin")
        // The zone was compiled from the system's database: summer and winter offsets.
        #expect(window.zone.offset(at: 1_783_000_000) == 7200)  // July 2026
        #expect(window.zone.offset(at: 1_795_000_000) == 3600)  // November 2026
    }

    @Test func timeErrors() {
        expectDiagnostic(
            self.authRoute("- deny: { time: { days: [funday] }, groups: [x] }"),
            line: 16,
            column: 32,
            "routes[0].rules[0].deny.time.days[0]: 'funday' is not a day"
        )
        expectDiagnostic(
            self.authRoute("- deny: { time: { hours: \"9:00-17:00\" }, groups: [x] }"),
            line: 16,
            column: 32,
            "routes[0].rules[0].deny.time.hours: '9:00-17:00' is not a time range"
        )
        expectDiagnostic(
            self.authRoute("- deny: { time: { hours: \"08:00-08:00\" }, groups: [x] }"),
            line: 16,
            column: 32,
            "is empty or the whole day"
        )
        expectDiagnostic(
            self.authRoute("- deny: { time: { days: [sat], timezone: Europe/Berln }, groups: [x] }"),
            line: 16,
            column: 48,
            "unknown time zone 'Europe/Berln' (an IANA name like Europe/Berlin, or UTC) (did you mean 'Europe/Berlin'?)"
        )
        expectDiagnostic(
            self.authRoute("- deny: { time: { timezone: UTC }, groups: [x] }"),
            line: 16,
            column: 23,
            "routes[0].rules[0].deny.time: needs 'days', 'hours' or both"
        )
    }

    // MARK: definitions and use

    static let definitions = """
        definitions:
          admins: { groups: [airflow-admins] }
          mfa: { claims: { amr: mfa } }
          admin-mfa: { use: admins, claims: { amr: mfa } }

        """

    @Test func definitionsAreReferencedByUse() {
        let yaml = Self.definitions + self.authRoute("- allow: { use: [admin-mfa, mfa], methods: [POST] }")
        let parsed = self.rules(yaml)
        guard case .anyOf(let references)? = parsed.first?.conditions.first else {
            Issue.record("no use condition: \(parsed)")
            return
        }
        #expect(references.map(\.name) == ["admin-mfa", "mfa"])
        guard case .anyOf(let inner)? = references[0].conditions.first else {
            Issue.record("admin-mfa does not use admins: \(references[0])")
            return
        }
        #expect(inner.map(\.name) == ["admins"])
        #expect(inner[0].conditions == [.groups(["airflow-admins"])])
    }

    @Test func definitionErrors() {
        // Unknown name, with a suggestion.
        expectDiagnostic(
            Self.definitions + self.authRoute("- allow: { use: admin }"),
            line: 20,
            column: 23,
            "routes[0].rules[0].allow.use: definition 'admin' does not exist (did you mean 'admins'?)"
        )
        // A cycle names its chain.
        expectDiagnostic(
            "definitions:\n  a: { use: b }\n  b: { use: a }\n" + self.authRoute("- allow: { use: a }"),
            line: 2,
            column: 3,
            "definitions.a: uses itself (a -> b -> a)"
        )
        // An error inside a definition is reported once, at the definition, even when used twice.
        let found = diagnostics(
            "definitions:\n  a: { grups: [x] }\n" + self.authRoute("- allow: { use: a }", "- deny: { use: a }")
        )
        #expect(found.filter { $0.message.contains("unknown key 'grups'") }.count == 1, "\(found)")
        // Unused definitions are a warning.
        expectDiagnostic(
            "definitions:\n  unused: { groups: [x] }\n" + self.authRoute("- allow: { groups: [y] }"),
            line: 2,
            column: 3,
            "definitions.unused: never used",
            severity: .warning
        )
        // No definitions at all.
        expectDiagnostic(self.authRoute("- allow: { use: a }"), line: 16, column: 23, "(there is no 'definitions:' section)")
        // An empty definition would hold for everyone.
        expectDiagnostic(
            "definitions:\n  all: {}\n" + self.authRoute("- allow: { use: all }"),
            line: 2,
            column: 8,
            "definitions.all: empty condition set"
        )
    }

    // MARK: issuers

    /// Regression: issuer names were compared with the identity's `iss` URL, so `issuers:` never held and
    /// a deny rule on an issuer failed open.
    @Test func issuerNamesCompileToTheirURLsSoDenyRulesHold() throws {
        let yaml = head
            + "  - { name: r, listener: web, match: {}, upstream: http://a, auth: { issuers: [corp, other], audiences: [airflow, other] }, rules: [ { deny: { issuers: [other], methods: [DELETE] } }, { allow: { issuers: [corp], authenticated: true } }, { allow: { groups: [staff] } } ] }\n"
        let loaded = try #require(expectValid(yaml))
        #expect(loaded.config.routes[0].rules[0].conditions.first == .issuers(["https://other.example.com"]))
        let simulator = PolicySimulator(config: loaded.config)
        func identity(_ iss: String) -> SimulatedIdentity {
            SimulatedIdentity(bearer: { _ in .success(Principal(issuer: iss, subject: "s", groups: ["staff"])) })
        }
        let corp = simulator.simulate(.init(method: "GET", url: "http://a.example.com/", time: 0), identity: identity("https://corp.example.com"))
        #expect(corp.allowed)
        #expect(corp.decidingRule == 1)
        // The attack: a staff member of the other issuer deleting. The deny rule must decide.
        let delete = simulator.simulate(.init(method: "DELETE", url: "http://a.example.com/", time: 0), identity: identity("https://other.example.com"))
        #expect(delete.reason == .deniedByRule)
        #expect(delete.decidingRule == 0)
    }

    // MARK: explain_denials

    @Test func explainDenialsIsOffByDefault() {
        let off = expectValid(self.authRoute("- allow: { groups: [x] }"))
        #expect(off?.config.routes.first?.policy.explainDenials == false)
        let on = expectValid(
            head
                + "  - { name: r, listener: web, match: {}, upstream: http://a, auth: { issuers: [corp] }, explain_denials: true, rules: [ { allow: { groups: [x] } } ] }\n"
        )
        #expect(on?.config.routes.first?.policy.explainDenials == true)
    }

    // MARK: check warnings

    @Test func shadowedRuleIsReportedAtTheLaterRule() {
        expectDiagnostic(
            self.authRoute("- allow: { groups: [admins, ops] }", "- deny: { groups: [admins], methods: [DELETE] }"),
            line: 17,
            column: 9,
            "routes[0].rules[1] (deny) never decides: rules[0] (allow, line 16) matches every request it matches and decides first",
            severity: .warning
        )
        expectDiagnostic(
            self.authRoute("- allow: { groups: [admins] }", "- allow: { groups: [admins], methods: [GET] }"),
            line: 17,
            column: 9,
            "routes[0].rules[1] is redundant: rules[0] (allow, line 16)",
            severity: .warning
        )
    }

    @Test func allowEveryoneOnAnAuthRouteWarnsUnlessSaidExplicitly() {
        expectDiagnostic(
            self.authRoute("- allow: { methods: [GET] }"),
            line: 16,
            column: 9,
            "routes[0].rules[0]: allows every caller with a valid identity for route 'r'",
            severity: .warning
        )
        #expect(diagnostics(self.authRoute("- allow: { authenticated: true, methods: [GET] }")).isEmpty)
        #expect(diagnostics(self.authRoute("- allow: { claims: { amr: mfa } }")).isEmpty)
    }

    @Test func authRouteWithoutRulesWarns() {
        expectDiagnostic(
            head + "  - { name: r, listener: web, match: {}, upstream: http://a, auth: { issuers: [corp] } }\n",
            line: 10,
            column: 5,
            "route 'r' requires identity but has no rules, so it allows nobody",
            severity: .warning
        )
    }
}
