import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("rules and conditions")
struct RuleTests {
    /// `head`, an `auth` route (lines 10-14), then `rules:` on line 15 and `items` from line 16 (6 spaces in).
    func authRoute(_ items: String...) -> String {
        head
            + "  - name: r\n    listener: web\n    match: {}\n    upstream: http://a\n    auth: { issuers: [corp] }\n    rules:\n"
            + items.map { "      \($0)\n" }.joined()
    }

    /// The same with `public: true` instead of `auth`.
    func publicRoute(_ items: String...) -> String {
        head + "  - name: r\n    listener: web\n    match: {}\n    upstream: http://a\n    public: true\n    rules:\n"
            + items.map { "      \($0)\n" }.joined()
    }

    @Test func ruleMustBeAMapping() {
        expectDiagnostic(
            self.authRoute("- allow"),
            line: 16,
            column: 9,
            "routes[0].rules[0]: expected a mapping with 'allow' or 'deny', got a string"
        )
    }

    @Test func rulesMustBeAList() {
        expectDiagnostic(
            head
                + "  - { name: r, listener: web, match: {}, upstream: http://a, public: true, rules: { allow: {} } }\n",
            line: 10,
            column: 83,
            "routes[0].rules: expected a list, got a mapping"
        )
    }

    @Test func emptyRule() {
        expectDiagnostic(
            self.authRoute("- {}"),
            line: 16,
            column: 9,
            "routes[0].rules[0]: a rule needs 'allow' or 'deny'"
        )
    }

    @Test func allowAndDenyInOneRule() {
        expectDiagnostic(
            self.authRoute("- allow: {}", "  deny: {}"),
            line: 17,
            column: 9,
            "routes[0].rules[0]: a rule has exactly one key, 'allow' or 'deny'; this one also has 'deny'"
        )
    }

    @Test func unknownRuleKeyWithSuggestion() {
        expectDiagnostic(
            self.authRoute("- alow: {}"),
            line: 16,
            column: 9,
            "unknown key 'alow' in routes[0].rules[0] (did you mean 'allow'?)"
        )
    }

    @Test func conditionsMustBeAMapping() {
        expectDiagnostic(
            self.authRoute("- allow: [admins]"),
            line: 16,
            column: 16,
            "routes[0].rules[0].allow: expected a mapping of conditions (or nothing, meaning always), got a list"
        )
    }

    @Test func unknownConditionWithSuggestion() {
        expectDiagnostic(
            self.authRoute("- allow: { group: admins }"),
            line: 16,
            column: 18,
            "unknown key 'group' in routes[0].rules[0].allow (did you mean 'groups'?)"
        )
    }

    @Test func emptyConditionList() {
        expectDiagnostic(
            self.authRoute("- allow: { groups: [] }"),
            line: 16,
            column: 26,
            "routes[0].rules[0].allow.groups: empty list; it could never match"
        )
    }

    @Test func badMethod() {
        expectDiagnostic(
            self.authRoute("- allow: { methods: [GET, \"PO ST\"] }"),
            line: 16,
            column: 33,
            "routes[0].rules[0].allow.methods[1]: 'PO ST' is not a valid HTTP method"
        )
    }

    @Test func badPathCondition() {
        expectDiagnostic(
            self.authRoute("- allow: { paths: \"/a/*/b\" }"),
            line: 16,
            column: 25,
            "routes[0].rules[0].allow.paths: path pattern \"/a/*/b\""
        )
    }

    @Test func badSourceCIDR() {
        expectDiagnostic(
            self.authRoute("- deny: { source_cidrs: [10.0.0.0/8, 300.0.0.0/8] }"),
            line: 16,
            column: 44,
            "routes[0].rules[0].deny.source_cidrs[1]: invalid CIDR '300.0.0.0/8'"
        )
    }

    @Test func unknownIssuerCondition() {
        expectDiagnostic(
            self.authRoute("- allow: { issuers: cop }"),
            line: 16,
            column: 27,
            "routes[0].rules[0].allow.issuers: unknown issuer 'cop' (did you mean 'corp'?)"
        )
    }

    @Test func badEmailAndDomain() {
        let yaml = self.authRoute("- allow: { emails: [ops.example.com], email_domains: [\"@example.com\"] }")
        expectDiagnostic(
            yaml,
            line: 16,
            column: 27,
            "routes[0].rules[0].allow.emails[0]: 'ops.example.com' is not an email address"
        )
        expectDiagnostic(
            yaml,
            line: 16,
            column: 61,
            "routes[0].rules[0].allow.email_domains[0]: '@example.com': write the domain without '@'"
        )
    }

    @Test func stringWhereListOrStringExpected() {
        expectDiagnostic(
            self.authRoute("- allow: { groups: { a: b } }"),
            line: 16,
            column: 26,
            "routes[0].rules[0].allow.groups: expected a string or a list of strings, got a mapping"
        )
    }

    @Test func authenticatedMustBeABool() {
        expectDiagnostic(
            self.authRoute("- allow: { authenticated: 1 }"),
            line: 16,
            column: 33,
            "routes[0].rules[0].allow.authenticated: expected true or false, got an integer"
        )
    }

    @Test func identityConditionOnPublicRouteIsAWarning() throws {
        let yaml = self.publicRoute("- allow: { groups: [admins], methods: GET }", "- deny: { authenticated: true }")
        let loaded = try #require(expectValid(yaml))
        #expect(loaded.warnings.count == 2)
        expectDiagnostic(
            yaml,
            line: 16,
            column: 18,
            "routes[0].rules[0].allow.groups: can never hold: public routes carry no identity",
            severity: .warning
        )
        expectDiagnostic(
            yaml,
            line: 17,
            column: 17,
            "routes[0].rules[1].deny.authenticated: can never hold: public routes carry no identity",
            severity: .warning
        )
        #expect(loaded.config.routes[0].rules.count == 2)
    }

    @Test func unauthenticatedOnAuthRouteIsAWarning() {
        expectDiagnostic(
            self.authRoute("- allow: { authenticated: false }"),
            line: 16,
            column: 18,
            "can never hold: route 'r' requires identity",
            severity: .warning
        )
    }

    @Test func issuerConditionOutsideTheRouteIsAWarning() {
        expectDiagnostic(
            self.authRoute("- allow: { issuers: [other] }"),
            line: 16,
            column: 28,
            "routes[0].rules[0].allow.issuers[0]: can never hold: route 'r' accepts tokens only from 'corp'",
            severity: .warning
        )
    }

    @Test func typedRules() throws {
        let yaml = self.authRoute(
            "- allow: { groups: [airflow-admins] }",
            "- allow: { groups: airflow-viewers, methods: [get, HEAD] }",
            "- deny: { paths: [/admin/*, /login], source_cidrs: [\"10.0.0.0/8\", \"::1\"] }",
            "- allow: { emails: [Alice@Example.COM], email_domains: Example.com, subjects: [svc-1], issuers: corp, authenticated: true }",
            "- deny:",
            "- allow: {}"
        )
        let rules = try #require(expectValid(yaml)?.config.routes.first?.rules)
        func at(_ line: Int) -> ProxyModel.SourceLocation {
            ProxyModel.SourceLocation(file: "policy.yaml", line: line, column: 9)
        }
        #expect(
            rules == [
                Rule(effect: .allow, conditions: [.groups(["airflow-admins"])], location: at(16)),
                Rule(
                    effect: .allow,
                    conditions: [.groups(["airflow-viewers"]), .methods(["GET", "HEAD"])],
                    location: at(17)
                ),
                Rule(
                    effect: .deny,
                    conditions: [
                        .paths([.prefix("/admin"), .exact("/login")]),
                        .sourceCIDRs([CIDR.parse("10.0.0.0/8")!, CIDR.parse("::1")!]),
                    ],
                    location: at(18)
                ),
                Rule(
                    effect: .allow,
                    conditions: [
                        .emails(["alice@example.com"]), .emailDomains(["example.com"]), .subjects(["svc-1"]),
                        .issuers(["https://corp.example.com"]),
                        .authenticated(true),
                    ],
                    location: at(19)
                ),
                Rule(effect: .deny, conditions: [], location: at(20)),
                Rule(effect: .allow, conditions: [], location: at(21)),
            ]
        )
    }
}
