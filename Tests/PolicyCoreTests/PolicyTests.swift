import PolicyCore
import ProxyModel
import Testing

@Suite("Rules and evaluation")
struct PolicyTests {
    static func facts(
        method: String = "GET",
        path: String = "/",
        client: String? = "10.1.2.3",
        time: Int64 = 1_795_000_000
    ) -> RequestFacts {
        RequestFacts(
            listener: "web",
            method: method,
            host: "airflow.example.com",
            path: path,
            clientAddress: client.flatMap { IPAddress.parse($0) },
            time: time
        )
    }

    static let alice = Principal(
        issuer: "https://corp.okta.com",
        subject: "00u1alice",
        email: "Alice@Example.COM",
        groups: ["airflow-admins", "staff"]
    )
    static let bob = Principal(
        issuer: "https://portcullis.local",
        subject: "svc-bob",
        email: "bob@partner.org",
        groups: ["airflow-viewers"]
    )
    static let anonymousCert = Principal(
        clientCertificate: ClientCertificateIdentity(subject: "CN=worker")
    )

    private func holds(
        _ condition: Condition,
        _ facts: RequestFacts = PolicyTests.facts(),
        _ principal: Principal? = PolicyTests.alice,
        prefix: String = ""
    ) -> Bool {
        condition.holds(facts: facts, principal: principal, routePathPrefix: prefix)
    }

    private static func cidrs(_ texts: String...) -> [CIDR] {
        texts.map { CIDR.parse($0)! }
    }

    private static func paths(_ texts: String...) -> [PathPattern] {
        texts.map { try! PathPattern.parse($0).get() }
    }

    // MARK: - conditions

    @Test func authenticated() {
        #expect(holds(.authenticated(true), Self.facts(), Self.alice))
        #expect(!holds(.authenticated(true), Self.facts(), nil))
        #expect(holds(.authenticated(false), Self.facts(), nil))
        #expect(!holds(.authenticated(false), Self.facts(), Self.alice))
        // a principal with no claims at all is still an identity
        #expect(holds(.authenticated(true), Self.facts(), Self.anonymousCert))
    }

    @Test func methods() {
        let readOnly = Condition.methods(["GET", "HEAD"])
        #expect(holds(readOnly, Self.facts(method: "GET")))
        #expect(holds(readOnly, Self.facts(method: "HEAD")))
        #expect(!holds(readOnly, Self.facts(method: "POST")))
        // methods are case-sensitive (RFC 9110)
        #expect(!holds(readOnly, Self.facts(method: "get")))
        #expect(!holds(.methods([]), Self.facts(method: "GET")))
        // not an identity condition: holds without a principal
        #expect(holds(readOnly, Self.facts(method: "GET"), nil))
    }

    @Test func pathsWithoutRoutePrefix() {
        let condition = Condition.paths(Self.paths("/admin/*", "/login"))
        #expect(holds(condition, Self.facts(path: "/admin")))
        #expect(holds(condition, Self.facts(path: "/admin/users")))
        #expect(holds(condition, Self.facts(path: "/login")))
        #expect(!holds(condition, Self.facts(path: "/login/x")))
        #expect(!holds(condition, Self.facts(path: "/administrator")))
        #expect(!holds(condition, Self.facts(path: "/")))
        #expect(!holds(.paths([]), Self.facts(path: "/")))
        #expect(holds(condition, Self.facts(path: "/admin"), nil))
    }

    @Test func pathsRelativeToTheRoutePrefix() {
        let condition = Condition.paths(Self.paths("/admin/*", "/"))
        // route `/api/*`: `/api/admin/x` is `/admin/x` for the rule, `/api` itself is `/`
        #expect(holds(condition, Self.facts(path: "/api/admin/x"), prefix: "/api"))
        #expect(holds(condition, Self.facts(path: "/api/admin"), prefix: "/api"))
        #expect(holds(condition, Self.facts(path: "/api"), prefix: "/api"))
        #expect(holds(condition, Self.facts(path: "/api/"), prefix: "/api"))
        #expect(!holds(condition, Self.facts(path: "/api/other"), prefix: "/api"))
        // not the absolute path
        #expect(!holds(condition, Self.facts(path: "/admin/x"), prefix: "/api"))
        // `/apiadmin` is not under `/api`
        #expect(!holds(Condition.paths(Self.paths("/*")), Self.facts(path: "/apiadmin"), prefix: "/api"))
        #expect(holds(Condition.paths(Self.paths("/*")), Self.facts(path: "/api/x"), prefix: "/api"))
    }

    @Test func sourceCIDRs() {
        let condition = Condition.sourceCIDRs(Self.cidrs("10.0.0.0/8", "2001:db8::/32"))
        #expect(holds(condition, Self.facts(client: "10.1.2.3")))
        #expect(holds(condition, Self.facts(client: "::ffff:10.1.2.3")))
        #expect(holds(condition, Self.facts(client: "2001:db8::5")))
        #expect(!holds(condition, Self.facts(client: "192.168.0.1")))
        #expect(!holds(condition, Self.facts(client: "2001:db9::5")))
        #expect(!holds(condition, Self.facts(client: nil)))
        #expect(holds(condition, Self.facts(client: "10.1.2.3"), nil))
    }

    @Test func groups() {
        #expect(holds(.groups(["airflow-admins"]), Self.facts(), Self.alice))
        #expect(holds(.groups(["nobody", "staff"]), Self.facts(), Self.alice))
        #expect(!holds(.groups(["airflow-admins"]), Self.facts(), Self.bob))
        #expect(!holds(.groups(["Airflow-Admins"]), Self.facts(), Self.alice))
        #expect(!holds(.groups(["airflow-admins"]), Self.facts(), nil))
        #expect(!holds(.groups([]), Self.facts(), Self.alice))
    }

    @Test func emails() {
        #expect(holds(.emails(["alice@example.com"]), Self.facts(), Self.alice))
        #expect(holds(.emails(["bob@partner.org", "alice@example.com"]), Self.facts(), Self.alice))
        #expect(!holds(.emails(["alice@example.org"]), Self.facts(), Self.alice))
        #expect(!holds(.emails(["alice@example.com"]), Self.facts(), Self.bob))
        #expect(!holds(.emails(["alice@example.com"]), Self.facts(), nil))
        #expect(!holds(.emails(["alice@example.com"]), Self.facts(), Self.anonymousCert))
    }

    @Test func emailDomains() {
        #expect(holds(.emailDomains(["example.com"]), Self.facts(), Self.alice))
        #expect(holds(.emailDomains(["partner.org"]), Self.facts(), Self.bob))
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), Self.bob))
        // the part after the *last* `@`; a suffix is not a domain match
        let tricky = Principal(email: "\"a@example.com\"@evil.org")
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), tricky))
        #expect(holds(.emailDomains(["evil.org"]), Self.facts(), tricky))
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), Principal(email: "x@sub.example.com")))
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), Principal(email: "x@notexample.com")))
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), Principal(email: "example.com")))
        #expect(!holds(.emailDomains([""]), Self.facts(), Principal(email: "x@")))
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), nil))
        #expect(!holds(.emailDomains(["example.com"]), Self.facts(), Self.anonymousCert))
    }

    @Test func subjectsAndIssuers() {
        #expect(holds(.subjects(["00u1alice"]), Self.facts(), Self.alice))
        #expect(!holds(.subjects(["00u1alice"]), Self.facts(), Self.bob))
        #expect(!holds(.subjects(["00U1ALICE"]), Self.facts(), Self.alice))
        #expect(!holds(.subjects(["00u1alice"]), Self.facts(), nil))
        #expect(!holds(.subjects(["00u1alice"]), Self.facts(), Self.anonymousCert))
        #expect(holds(.issuers(["https://corp.okta.com"]), Self.facts(), Self.alice))
        #expect(!holds(.issuers(["https://corp.okta.com"]), Self.facts(), Self.bob))
        #expect(!holds(.issuers(["https://corp.okta.com"]), Self.facts(), nil))
        #expect(!holds(.issuers(["https://corp.okta.com"]), Self.facts(), Self.anonymousCert))
    }

    @Test func keys() {
        let expected: [(Condition, String)] = [
            (.authenticated(true), "authenticated"),
            (.methods([]), "methods"),
            (.paths([]), "paths"),
            (.sourceCIDRs([]), "source_cidrs"),
            (.groups([]), "groups"),
            (.emails([]), "emails"),
            (.emailDomains([]), "email_domains"),
            (.subjects([]), "subjects"),
            (.issuers([]), "issuers"),
        ]
        for (condition, key) in expected {
            #expect(condition.key == key)
        }
    }

    // MARK: - evaluation

    static let adminsOrReaders = RoutePolicy(
        isPublic: false,
        rules: [
            Rule(effect: .deny, conditions: [.paths(paths("/admin/*")), .groups(["contractors"])]),
            Rule(effect: .allow, conditions: [.groups(["airflow-admins"])]),
            Rule(effect: .allow, conditions: [.groups(["airflow-viewers"]), .methods(["GET", "HEAD"])]),
        ]
    )

    @Test func firstMatchingRuleDecides() {
        let policy = Self.adminsOrReaders
        #expect(policy.evaluate(facts: Self.facts(method: "POST"), principal: Self.alice) == .allow(rule: 1))
        #expect(policy.evaluate(facts: Self.facts(method: "GET"), principal: Self.bob) == .allow(rule: 2))
        // all conditions of a rule must hold
        #expect(
            policy.evaluate(facts: Self.facts(method: "POST"), principal: Self.bob)
                == .deny(reason: .noRuleMatched, rule: nil)
        )
        let contractorAdmin = Principal(subject: "c1", groups: ["contractors", "airflow-admins"])
        #expect(
            policy.evaluate(facts: Self.facts(path: "/admin/x"), principal: contractorAdmin)
                == .deny(reason: .deniedByRule, rule: 0)
        )
        // the deny rule does not hold outside /admin, so the next rule allows
        #expect(policy.evaluate(facts: Self.facts(path: "/dags"), principal: contractorAdmin) == .allow(rule: 1))
    }

    @Test func orderMatters() {
        let allowFirst = RoutePolicy(
            isPublic: false,
            rules: [
                Rule(effect: .allow, conditions: [.groups(["staff"])]),
                Rule(effect: .deny, conditions: [.groups(["staff"])]),
            ]
        )
        let denyFirst = RoutePolicy(isPublic: false, rules: allowFirst.rules.reversed())
        #expect(allowFirst.evaluate(facts: Self.facts(), principal: Self.alice) == .allow(rule: 0))
        #expect(
            denyFirst.evaluate(facts: Self.facts(), principal: Self.alice) == .deny(reason: .deniedByRule, rule: 0)
        )
    }

    @Test func emptyConditionsAlwaysHold() {
        let policy = RoutePolicy(
            isPublic: false,
            rules: [
                Rule(effect: .deny, conditions: [.methods(["DELETE"])]),
                Rule(effect: .allow, conditions: []),
            ]
        )
        #expect(policy.evaluate(facts: Self.facts(), principal: Self.bob) == .allow(rule: 1))
        #expect(
            policy.evaluate(facts: Self.facts(method: "DELETE"), principal: Self.bob)
                == .deny(reason: .deniedByRule, rule: 0)
        )
    }

    @Test func unauthenticatedBeforeAnyRule() {
        // Even a rule that would allow anonymous requests does not run on an `auth` route.
        let policy = RoutePolicy(isPublic: false, rules: [Rule(effect: .allow, conditions: [.authenticated(false)])])
        let decision = policy.evaluate(facts: Self.facts(), principal: nil)
        #expect(decision == .deny(reason: .unauthenticated, rule: nil))
        #expect(ReasonCode.unauthenticated.status == 401)
        #expect(
            RoutePolicy(isPublic: false, rules: []).evaluate(facts: Self.facts(), principal: nil)
                == .deny(reason: .unauthenticated, rule: nil)
        )
    }

    @Test func defaultDeny() {
        #expect(
            RoutePolicy(isPublic: false, rules: []).evaluate(facts: Self.facts(), principal: Self.alice)
                == .deny(reason: .noRuleMatched, rule: nil)
        )
        let policy = RoutePolicy(isPublic: false, rules: [Rule(effect: .allow, conditions: [.groups(["nobody"])])])
        let decision = policy.evaluate(facts: Self.facts(), principal: Self.alice)
        #expect(decision == .deny(reason: .noRuleMatched, rule: nil))
        #expect(ReasonCode.noRuleMatched.status == 403)
    }

    @Test func publicRoutes() {
        let open = RoutePolicy(isPublic: true, rules: [])
        #expect(open.evaluate(facts: Self.facts(), principal: nil) == .allow(rule: nil))
        #expect(open.evaluate(facts: Self.facts(), principal: Self.alice) == .allow(rule: nil))

        // a public route with rules still applies them, with or without identity
        let internalOnly = RoutePolicy(
            isPublic: true,
            rules: [
                Rule(effect: .allow, conditions: [.sourceCIDRs(Self.cidrs("10.0.0.0/8"))]),
                Rule(effect: .allow, conditions: [.authenticated(true)]),
            ]
        )
        #expect(internalOnly.evaluate(facts: Self.facts(client: "10.9.9.9"), principal: nil) == .allow(rule: 0))
        #expect(internalOnly.evaluate(facts: Self.facts(client: "8.8.8.8"), principal: Self.bob) == .allow(rule: 1))
        #expect(
            internalOnly.evaluate(facts: Self.facts(client: "8.8.8.8"), principal: nil)
                == .deny(reason: .noRuleMatched, rule: nil)
        )
        #expect(
            internalOnly.evaluate(facts: Self.facts(client: nil), principal: nil)
                == .deny(reason: .noRuleMatched, rule: nil)
        )
    }

    @Test func routePrefixReachesPathConditions() {
        let policy = RoutePolicy(
            isPublic: false,
            rules: [
                Rule(effect: .deny, conditions: [.paths(Self.paths("/admin/*"))]),
                Rule(effect: .allow, conditions: []),
            ],
            pathPrefix: "/api"
        )
        #expect(
            policy.evaluate(facts: Self.facts(path: "/api/admin/x"), principal: Self.alice)
                == .deny(reason: .deniedByRule, rule: 0)
        )
        #expect(policy.evaluate(facts: Self.facts(path: "/api/jobs"), principal: Self.alice) == .allow(rule: 1))
    }
}
