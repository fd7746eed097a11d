import PolicyCore
import ProxyModel
import Testing

/// claims, client_cert, time and use: the conditions that look into the identity and at the clock.
@Suite("claims, client certificate, time and definitions")
struct ConditionTests {
    static func facts(method: String = "GET", path: String = "/", time: Int64 = 1_795_000_000) -> RequestFacts {
        RequestFacts(listener: "web", method: method, host: "a.example.com", path: path, clientAddress: nil, time: time)
    }

    static func principal(_ claims: [String: JSONValue]) -> Principal {
        Principal(issuer: "https://idp", subject: "alice", claims: claims)
    }

    static func claim(_ path: String, _ test: ClaimMatcher.Test) -> Condition {
        .claim(ClaimMatcher(path: ClaimMatcher.parsePath(path)!, name: path, test: test))
    }

    // MARK: claims

    @Test func amrArrayContainsMFA() {
        let mfa = Self.claim("amr", .anyOf([.string("mfa")]))
        #expect(mfa.holds(facts: Self.facts(), principal: Self.principal(["amr": .array([.string("pwd"), .string("mfa")])]), routePathPrefix: ""))
        #expect(!mfa.holds(facts: Self.facts(), principal: Self.principal(["amr": .array([.string("pwd")])]), routePathPrefix: ""))
        #expect(mfa.holds(facts: Self.facts(), principal: Self.principal(["amr": .string("mfa")]), routePathPrefix: ""))
        // Attack: a claim that only looks like it (case, substring, nested array) does not hold.
        #expect(!mfa.holds(facts: Self.facts(), principal: Self.principal(["amr": .string("MFA")]), routePathPrefix: ""))
        #expect(!mfa.holds(facts: Self.facts(), principal: Self.principal(["amr": .string("nomfa")]), routePathPrefix: ""))
        #expect(!mfa.holds(facts: Self.facts(), principal: Self.principal(["amr": .array([.array([.string("mfa")])])]), routePathPrefix: ""))
        #expect(!mfa.holds(facts: Self.facts(), principal: nil, routePathPrefix: ""))
        #expect(!mfa.holds(facts: Self.facts(), principal: Self.principal([:]), routePathPrefix: ""))
    }

    @Test func nestedPathsAndBracketedNames() {
        let roles = Self.claim("realm_access.roles", .anyOf([.string("admin")]))
        let nested: [String: JSONValue] = ["realm_access": .object(["roles": .array([.string("user"), .string("admin")])])]
        #expect(roles.holds(facts: Self.facts(), principal: Self.principal(nested), routePathPrefix: ""))
        // A top-level claim literally named "realm_access.roles" is not the nested path.
        #expect(!roles.holds(facts: Self.facts(), principal: Self.principal(["realm_access.roles": .string("admin")]), routePathPrefix: ""))

        #expect(ClaimMatcher.parsePath("[https://example.com/roles]") == ["https://example.com/roles"])
        #expect(ClaimMatcher.parsePath("[https://example.com/app].roles") == ["https://example.com/app", "roles"])
        #expect(ClaimMatcher.parsePath("a.b.c") == ["a", "b", "c"])
        for bad in ["", ".a", "a.", "a..b", "[a", "[]", "a[b]", "[a]b", "[a]."] {
            #expect(ClaimMatcher.parsePath(bad) == nil, "\(bad)")
        }
        let namespaced = Self.claim("[https://example.com/roles]", .anyOf([.string("ops")]))
        #expect(namespaced.holds(facts: Self.facts(), principal: Self.principal(["https://example.com/roles": .array([.string("ops")])]), routePathPrefix: ""))
    }

    @Test func scalarTypesCompareStrictly() {
        let verified = Self.claim("email_verified", .anyOf([.bool(true)]))
        #expect(verified.holds(facts: Self.facts(), principal: Self.principal(["email_verified": .bool(true)]), routePathPrefix: ""))
        // The string "true" is not the boolean true.
        #expect(!verified.holds(facts: Self.facts(), principal: Self.principal(["email_verified": .string("true")]), routePathPrefix: ""))
        let level = Self.claim("level", .anyOf([.integer(3)]))
        #expect(level.holds(facts: Self.facts(), principal: Self.principal(["level": .integer(3)]), routePathPrefix: ""))
        #expect(level.holds(facts: Self.facts(), principal: Self.principal(["level": .number(3.0)]), routePathPrefix: ""))
        #expect(!level.holds(facts: Self.facts(), principal: Self.principal(["level": .number(3.5)]), routePathPrefix: ""))
        #expect(!level.holds(facts: Self.facts(), principal: Self.principal(["level": .string("3")]), routePathPrefix: ""))
    }

    @Test func existence() {
        let present = Self.claim("acr", .exists(true))
        let absent = Self.claim("act", .exists(false))
        #expect(present.holds(facts: Self.facts(), principal: Self.principal(["acr": .null]), routePathPrefix: ""))
        #expect(!present.holds(facts: Self.facts(), principal: Self.principal([:]), routePathPrefix: ""))
        #expect(absent.holds(facts: Self.facts(), principal: Self.principal([:]), routePathPrefix: ""))
        // A delegated token (RFC 8693 `act`) is refused by a rule that wants direct callers only.
        #expect(!absent.holds(facts: Self.facts(), principal: Self.principal(["act": .object(["sub": .string("svc")])]), routePathPrefix: ""))
        // No identity: nothing about claims holds, not even absence.
        #expect(!absent.holds(facts: Self.facts(), principal: nil, routePathPrefix: ""))
    }

    // MARK: client certificates

    static let worker = ClientCertificateIdentity(
        subject: "CN=worker,O=Example",
        commonName: "worker",
        uriSANs: ["spiffe://example.com/ns/jobs/sa/worker"],
        dnsSANs: ["Worker-1.Workers.Example.com"],
        emailSANs: ["Worker@Example.com"]
    )

    static func holds(_ matcher: CertificateMatcher, _ certificate: ClientCertificateIdentity?) -> Bool {
        Condition.clientCert(matcher).holds(
            facts: Self.facts(),
            principal: certificate.map { Principal(clientCertificate: $0) },
            routePathPrefix: ""
        )
    }

    @Test func spiffeIDs() {
        #expect(Self.holds(.spiffeIDs([.exact("spiffe://example.com/ns/jobs/sa/worker")]), Self.worker))
        #expect(Self.holds(.spiffeIDs([.pathPrefix("spiffe://example.com/ns/jobs/")]), Self.worker))
        // Attack: another namespace, a prefix that is not on a segment boundary, another trust domain.
        #expect(!Self.holds(.spiffeIDs([.pathPrefix("spiffe://example.com/ns/batch/")]), Self.worker))
        #expect(!Self.holds(.spiffeIDs([.exact("spiffe://example.com/ns/jobs/sa/work")]), Self.worker))
        #expect(!Self.holds(.spiffeIDs([.pathPrefix("spiffe://example.com/ns/job/")]), Self.worker))
        var evil = Self.worker
        evil.uriSANs = ["spiffe://example.com.evil.org/ns/jobs/sa/worker"]
        #expect(!Self.holds(.spiffeIDs([.pathPrefix("spiffe://example.com/")]), evil))
        // An SVID has exactly one URI SAN: a certificate with two has no SPIFFE ID at all.
        var two = Self.worker
        two.uriSANs.append("spiffe://example.com/ns/admin/sa/root")
        #expect(!Self.holds(.spiffeIDs([.exact("spiffe://example.com/ns/admin/sa/root")]), two))
        #expect(Self.holds(.uriSANs([.exact("spiffe://example.com/ns/admin/sa/root")]), two))
        // A non-SPIFFE URI is no SPIFFE ID.
        var https = Self.worker
        https.uriSANs = ["https://example.com/ns/jobs/sa/worker"]
        #expect(!Self.holds(.spiffeIDs([.pathPrefix("https://example.com/")]), https))
        #expect(!Self.holds(.spiffeIDs([.exact("spiffe://example.com/ns/jobs/sa/worker")]), nil))
    }

    @Test func namesAndSubject() {
        #expect(Self.holds(.dnsSANs([.exact("worker-1.workers.example.com")]), Self.worker))
        #expect(Self.holds(.dnsSANs([.dnsWildcard(suffix: ".workers.example.com")]), Self.worker))
        // The wildcard covers one label only.
        var deep = Self.worker
        deep.dnsSANs = ["a.b.workers.example.com"]
        #expect(!Self.holds(.dnsSANs([.dnsWildcard(suffix: ".workers.example.com")]), deep))
        #expect(!Self.holds(.dnsSANs([.dnsWildcard(suffix: ".example.org")]), Self.worker))
        #expect(Self.holds(.emailSANs(["worker@example.com"]), Self.worker))
        #expect(Self.holds(.subjectCN(["worker"]), Self.worker))
        #expect(!Self.holds(.subjectCN(["Worker"]), Self.worker))
        var noCN = Self.worker
        noCN.commonName = nil
        #expect(!Self.holds(.subjectCN(["worker"]), noCN))
    }

    // MARK: time

    /// Europe/Berlin: CET (+1) in winter, CEST (+2) from the last Sunday of March, 01:00 UTC.
    static let berlin = UTCOffsetTable(
        name: "Europe/Berlin",
        initialOffset: 3600,
        transitions: [1_774_746_000, 1_792_890_000],  // 2026-03-29T01:00Z, 2026-10-25T01:00Z
        offsets: [7200, 3600]
    )

    @Test func offsetsFollowTransitions() {
        #expect(Self.berlin.offset(at: 1_774_745_999) == 3600)
        #expect(Self.berlin.offset(at: 1_774_746_000) == 7200)
        #expect(Self.berlin.offset(at: 1_792_889_999) == 7200)
        #expect(Self.berlin.offset(at: 1_792_890_000) == 3600)
        #expect(UTCOffsetTable.utc.offset(at: 0) == 0)
    }

    @Test func officeHoursAcrossDST() {
        let office = TimeWindow(
            days: [.monday, .tuesday, .wednesday, .thursday, .friday],
            hours: [.init(start: 9 * 60, end: 17 * 60)],
            zone: Self.berlin
        )
        // Monday 2026-03-30 (summer time): 07:00Z is 09:00 local (inside), 06:59Z is 08:59 (outside).
        #expect(office.holds(at: 1_774_854_000))
        #expect(!office.holds(at: 1_774_853_940))
        // Monday 2026-03-23 (winter time): 08:00Z is 09:00 local; 07:30Z is 08:30.
        #expect(office.holds(at: 1_774_252_800))
        #expect(!office.holds(at: 1_774_251_000))
        // 17:00 local is outside (end exclusive): Monday 2026-03-30 15:00Z.
        #expect(!office.holds(at: 1_774_882_800))
        // Saturday 2026-03-28 10:00 local (09:00Z) is outside.
        #expect(!office.holds(at: 1_774_688_400))
    }

    @Test func nightWindowWrapsPastMidnight() {
        let night = TimeWindow(days: nil, hours: [.init(start: 22 * 60, end: 6 * 60)], zone: .utc)
        #expect(night.holds(at: 1_795_000_000 - 1_795_000_000 % 86_400 + 23 * 3600))
        #expect(night.holds(at: 1_795_000_000 - 1_795_000_000 % 86_400 + 5 * 3600))
        #expect(!night.holds(at: 1_795_000_000 - 1_795_000_000 % 86_400 + 6 * 3600))
        #expect(!night.holds(at: 1_795_000_000 - 1_795_000_000 % 86_400 + 12 * 3600))
    }

    @Test func weekdaysBeforeTheEpochAndAfter() {
        let window = TimeWindow(days: [.thursday], hours: [], zone: .utc)
        #expect(window.local(at: 0).day == .thursday)  // 1970-01-01
        #expect(window.local(at: -1).day == .wednesday)
        #expect(window.local(at: -1).minute == 1439)
        #expect(window.local(at: 1_795_219_200).day == .saturday)  // 2026-11-21
    }

    // MARK: use

    @Test func useIsAnyOfDefinitionsEachAllOf() {
        let adminsWithMFA = DefinitionReference(
            name: "admin-mfa",
            conditions: [.groups(["admins"]), Self.claim("amr", .anyOf([.string("mfa")]))]
        )
        let oncall = DefinitionReference(name: "oncall", conditions: [.groups(["oncall"])])
        let use = Condition.anyOf([adminsWithMFA, oncall])
        func principal(_ groups: [String], amr: [String]) -> Principal {
            Principal(issuer: "i", subject: "s", groups: groups, claims: ["amr": .array(amr.map { .string($0) })])
        }
        #expect(use.holds(facts: Self.facts(), principal: principal(["admins"], amr: ["mfa"]), routePathPrefix: ""))
        #expect(use.holds(facts: Self.facts(), principal: principal(["oncall"], amr: []), routePathPrefix: ""))
        #expect(!use.holds(facts: Self.facts(), principal: principal(["admins"], amr: ["pwd"]), routePathPrefix: ""))
        #expect(!use.holds(facts: Self.facts(), principal: principal([], amr: ["mfa"]), routePathPrefix: ""))
    }

    // MARK: explain

    @Test func explanationNamesTheFailedConditionOfEachRule() {
        let location = SourceLocation(file: "p.yaml", line: 12, column: 9)
        let policy = RoutePolicy(
            isPublic: false,
            rules: [
                Rule(effect: .allow, conditions: [.groups(["admins"])], location: location),
                Rule(effect: .allow, conditions: [.groups(["viewers"]), .methods(["GET", "HEAD"])]),
                Rule(effect: .deny, conditions: [.methods(["POST"])]),
            ]
        )
        let viewer = Principal(issuer: "i", subject: "v", groups: ["viewers"])
        let post = policy.explain(facts: Self.facts(method: "POST"), principal: viewer)
        #expect(post.decision == .deny(reason: .deniedByRule, rule: 2))
        #expect(post.decision == policy.evaluate(facts: Self.facts(method: "POST"), principal: viewer))
        #expect(
            post.lines == [
                "rules[0] (allow, line 12): failed groups: any of [admins]",
                "rules[1] (allow): failed methods: any of [GET, HEAD]",
                "rules[2] (deny): matched",
            ]
        )
        let get = policy.explain(facts: Self.facts(), principal: viewer)
        #expect(get.decision == .allow(rule: 1))
        #expect(get.rules.count == 2)
        let anonymous = policy.explain(facts: Self.facts(), principal: nil)
        #expect(anonymous.decision == .deny(reason: .unauthenticated, rule: nil))
        #expect(anonymous.rules.isEmpty)
        let nobody = policy.explain(facts: Self.facts(method: "PUT"), principal: Principal(issuer: "i", subject: "x"))
        #expect(nobody.decision == .deny(reason: .noRuleMatched, rule: nil))
        #expect(nobody.rules.count == 3)
    }
}
