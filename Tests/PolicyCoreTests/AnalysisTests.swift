import PolicyCore
import ProxyModel
import Testing

@Suite("static analysis: shadowed rules and allow-everyone rules")
struct AnalysisTests {
    static func rule(_ effect: RuleEffect, _ conditions: Condition...) -> Rule { Rule(effect: effect, conditions: conditions) }

    static func shadowed(_ rules: [Rule], isPublic: Bool = false) -> [PolicyAnalysis.Shadowing] {
        PolicyAnalysis.shadowedRules(rules, isPublic: isPublic)
    }

    @Test func widerEarlierRuleShadowsConditionByCondition() {
        let found = Self.shadowed([
            Self.rule(.allow, .groups(["admins", "ops"])),
            Self.rule(.deny, .groups(["admins"]), .methods(["DELETE"])),
        ])
        #expect(found == [PolicyAnalysis.Shadowing(rule: 1, coveredBy: 0, sameEffect: false)])
    }

    @Test func narrowerEarlierRuleDoesNotShadow() {
        // rules[0] needs GET; rules[1] matches POST too: not shadowed.
        #expect(
            Self.shadowed([
                Self.rule(.allow, .groups(["admins"]), .methods(["GET"])),
                Self.rule(.allow, .groups(["admins"])),
            ]).isEmpty
        )
        // Different keys: nothing can be proven.
        #expect(Self.shadowed([Self.rule(.allow, .groups(["a"])), Self.rule(.allow, .emails(["a@b.c"]))]).isEmpty)
    }

    @Test func ruleWithoutConditionsShadowsEverythingAfter() {
        let found = Self.shadowed([
            Self.rule(.allow),
            Self.rule(.deny, .methods(["POST"])),
            Self.rule(.allow, .groups(["x"])),
        ])
        #expect(found.map(\.rule) == [1, 2])
        #expect(found.map(\.sameEffect) == [false, true])
    }

    @Test func pathsCIDRsAndEmails() {
        let api = PathPattern.prefix("/api")
        #expect(
            Self.shadowed([
                Self.rule(.allow, .paths([api])),
                Self.rule(.deny, .paths([.exact("/api/admin"), .prefix("/api/v1")])),
            ]).count == 1
        )
        #expect(Self.shadowed([Self.rule(.allow, .paths([api])), Self.rule(.deny, .paths([.prefix("/apis")]))]).isEmpty)
        #expect(
            Self.shadowed([
                Self.rule(.deny, .sourceCIDRs([CIDR.parse("10.0.0.0/8")!])),
                Self.rule(.allow, .sourceCIDRs([CIDR.parse("10.1.0.0/16")!])),
            ]).count == 1
        )
        #expect(
            Self.shadowed([
                Self.rule(.deny, .sourceCIDRs([CIDR.parse("10.1.0.0/16")!])),
                Self.rule(.allow, .sourceCIDRs([CIDR.parse("10.0.0.0/8")!])),
            ]).isEmpty
        )
        #expect(
            Self.shadowed([
                Self.rule(.allow, .emailDomains(["example.com"])),
                Self.rule(.deny, .emails(["eve@example.com"])),
            ]).count == 1
        )
    }

    @Test func claimsAndCertificates() {
        func claim(_ name: String, _ test: ClaimMatcher.Test) -> Condition {
            .claim(ClaimMatcher(path: [name], name: name, test: test))
        }
        #expect(
            Self.shadowed([
                Self.rule(.allow, claim("amr", .exists(true))),
                Self.rule(.deny, claim("amr", .anyOf([.string("pwd")]))),
            ]).count == 1
        )
        #expect(
            Self.shadowed([
                Self.rule(.allow, claim("amr", .anyOf([.string("mfa")]))),
                Self.rule(.deny, claim("amr", .anyOf([.string("mfa"), .string("pwd")]))),
            ]).isEmpty
        )
        #expect(
            Self.shadowed([
                Self.rule(.allow, .clientCert(.spiffeIDs([.pathPrefix("spiffe://example.com/ns/")]))),
                Self.rule(.deny, .clientCert(.spiffeIDs([.exact("spiffe://example.com/ns/jobs/sa/x")]))),
            ]).count == 1
        )
        #expect(
            Self.shadowed([
                Self.rule(.allow, .clientCert(.spiffeIDs([.pathPrefix("spiffe://example.com/ns/jobs/")]))),
                Self.rule(.deny, .clientCert(.spiffeIDs([.pathPrefix("spiffe://example.com/ns/")]))),
            ]).isEmpty
        )
    }

    @Test func timeWindows() {
        let weekend = TimeWindow(days: [.saturday, .sunday], hours: [], zone: .utc)
        let saturdayNight = TimeWindow(days: [.saturday], hours: [.init(start: 22 * 60, end: 2 * 60)], zone: .utc)
        #expect(Self.shadowed([Self.rule(.deny, .time(weekend)), Self.rule(.allow, .time(saturdayNight))]).count == 1)
        #expect(Self.shadowed([Self.rule(.deny, .time(saturdayNight)), Self.rule(.allow, .time(weekend))]).isEmpty)
        let evening = TimeWindow(days: nil, hours: [.init(start: 18 * 60, end: 6 * 60)], zone: .utc)
        let lateNight = TimeWindow(days: nil, hours: [.init(start: 23 * 60, end: 1 * 60)], zone: .utc)
        #expect(Self.shadowed([Self.rule(.deny, .time(evening)), Self.rule(.allow, .time(lateNight))]).count == 1)
        #expect(Self.shadowed([Self.rule(.deny, .time(lateNight)), Self.rule(.allow, .time(evening))]).isEmpty)
    }

    @Test func definitionsAreExpanded() {
        let admins = DefinitionReference(name: "admins", conditions: [.groups(["admins"])])
        let ops = DefinitionReference(name: "ops", conditions: [.groups(["ops"])])
        // use: [admins, ops] first; then a rule for admins only: covered.
        #expect(
            Self.shadowed([
                Self.rule(.allow, .anyOf([admins, ops])),
                Self.rule(.deny, .anyOf([admins]), .methods(["DELETE"])),
            ]).count == 1
        )
        // use: admins first; a later use: [admins, ops] also admits ops: not covered.
        #expect(Self.shadowed([Self.rule(.allow, .anyOf([admins])), Self.rule(.deny, .anyOf([admins, ops]))]).isEmpty)
        // A definition and the same condition written out are the same thing.
        #expect(Self.shadowed([Self.rule(.allow, .groups(["admins"])), Self.rule(.deny, .anyOf([admins]))]).count == 1)
    }

    @Test func authenticatedTrueOnAnAuthRouteIsAlwaysTrue() {
        #expect(Self.shadowed([Self.rule(.allow, .authenticated(true)), Self.rule(.deny, .groups(["x"]))]).count == 1)
        #expect(Self.shadowed([Self.rule(.allow, .authenticated(true)), Self.rule(.deny, .groups(["x"]))], isPublic: true).isEmpty)
    }

    @Test func allowsEveryone() {
        #expect(PolicyAnalysis.allowsEveryone(Self.rule(.allow), identitySources: 1))
        #expect(PolicyAnalysis.allowsEveryone(Self.rule(.allow, .methods(["GET"]), .paths([.prefix("/x")])), identitySources: 1))
        #expect(!PolicyAnalysis.allowsEveryone(Self.rule(.allow, .authenticated(true)), identitySources: 1))
        #expect(!PolicyAnalysis.allowsEveryone(Self.rule(.allow, .groups(["a"])), identitySources: 1))
        #expect(!PolicyAnalysis.allowsEveryone(Self.rule(.deny), identitySources: 1))
        // issuers says who only when there is a choice of issuers.
        #expect(PolicyAnalysis.allowsEveryone(Self.rule(.allow, .issuers(["corp"])), identitySources: 1))
        #expect(!PolicyAnalysis.allowsEveryone(Self.rule(.allow, .issuers(["corp"])), identitySources: 2))
        // One alternative of a use: that says nothing about who is enough to warn.
        let anyone = DefinitionReference(name: "office", conditions: [.sourceCIDRs([CIDR.parse("10.0.0.0/8")!])])
        let admins = DefinitionReference(name: "admins", conditions: [.groups(["admins"])])
        #expect(PolicyAnalysis.allowsEveryone(Self.rule(.allow, .anyOf([admins, anyone])), identitySources: 1))
        #expect(!PolicyAnalysis.allowsEveryone(Self.rule(.allow, .anyOf([admins])), identitySources: 1))
    }
}
