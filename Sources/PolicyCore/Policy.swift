public import ProxyModel

public enum RuleEffect: String, Sendable, Hashable {
    case allow
    case deny
}

/// One condition of a rule. Inside a condition a list means "any of".
public enum Condition: Sendable, Hashable {
    /// true: an identity is present; false: no identity.
    case authenticated(Bool)
    /// Upper-case method names.
    case methods(Set<String>)
    /// Path patterns relative to the route (same syntax as route paths: exact or `/prefix/*`).
    case paths([PathPattern])
    case sourceCIDRs([CIDR])
    case groups(Set<String>)
    case emails(Set<String>)
    /// Lower-case domains, compared with the part after the last `@` of the email.
    case emailDomains(Set<String>)
    case subjects(Set<String>)
    /// Issuer URLs (`iss`): the policy file names issuers; the loader compiles the names to their URLs,
    /// which is what a verified identity carries.
    case issuers(Set<String>)
    /// One entry of `claims:` (each claim path is its own condition).
    case claim(ClaimMatcher)
    /// One entry of `client_cert:` (each key is its own condition); never holds without a certificate.
    case clientCert(CertificateMatcher)
    /// `time:`: the request arrived inside this window of local time.
    case time(TimeWindow)
    /// `use:`: one of these named condition sets holds.
    case anyOf([DefinitionReference])

    /// Whether the condition holds for these facts and identity.
    public func holds(facts: RequestFacts, principal: Principal?, routePathPrefix: String) -> Bool {
        _conditionHolds(self, facts: facts, principal: principal, routePathPrefix: routePathPrefix)
    }

    /// The key name as written in the policy file (`methods`, `source_cidrs`, `claims.amr`,
    /// `client_cert.spiffe_ids`, ...).
    public var key: String { _conditionKey(self) }

    /// What the condition requires, as a short text for `explain` (`groups: any of [admins]`).
    public var summary: String { _conditionSummary(self) }
}

public struct Rule: Sendable, Hashable {
    public var effect: RuleEffect
    /// All must hold. An empty list always holds.
    public var conditions: [Condition]
    public var location: SourceLocation?

    public init(effect: RuleEffect, conditions: [Condition], location: SourceLocation? = nil) {
        self.effect = effect
        self.conditions = conditions
        self.location = location
    }
}

/// The compiled policy of one route.
public struct RoutePolicy: Sendable, Hashable {
    /// `public: true`: no identity required.
    public var isPublic: Bool
    public var rules: [Rule]
    /// The route's path prefix (for `paths` conditions, which are relative to the route);
    /// empty for `/*` and exact routes.
    public var pathPrefix: String
    /// `explain_denials: true`: a 403 body names the rules tried and the condition that failed in each.
    public var explainDenials: Bool

    public init(isPublic: Bool, rules: [Rule], pathPrefix: String = "", explainDenials: Bool = false) {
        self.isPublic = isPublic
        self.rules = rules
        self.pathPrefix = pathPrefix
        self.explainDenials = explainDenials
    }

    /// First matching rule decides; none: 403 (``ReasonCode/noRuleMatched``).
    /// A public route without rules allows everything. An `auth` route without identity is denied
    /// with ``ReasonCode/unauthenticated`` before any rule runs.
    public func evaluate(facts: RequestFacts, principal: Principal?) -> Decision {
        _evaluate(self, facts: facts, principal: principal)
    }

    /// The same decision as ``evaluate(facts:principal:)``, with every rule tried and the first condition
    /// that failed in each (for `portcullis explain`, `portcullis test` and `explain_denials`).
    public func explain(facts: RequestFacts, principal: Principal?) -> PolicyExplanation {
        _explain(self, facts: facts, principal: principal)
    }
}

/// How a decision was reached.
public struct PolicyExplanation: Sendable, Equatable {
    public struct RuleTrace: Sendable, Equatable {
        /// Index of the rule in its route (0-based).
        public var index: Int
        public var effect: RuleEffect
        public var location: SourceLocation?
        /// nil when every condition held (this rule decided); otherwise the first that failed.
        public var failed: Condition?
        /// For a failed `use:`, why each named set failed (`admin-mfa: claims.amr: any of ["mfa"]`).
        public var detail: String?
    }

    public var decision: Decision
    /// The rules tried, in order, up to and including the deciding one; empty when no rule ran
    /// (no identity on an `auth` route, or a route without rules).
    public var rules: [RuleTrace]

    /// One line per rule tried: `rules[0] (allow, line 12): failed groups: any of [admins]`, or
    /// `rules[2] (deny, line 20): matched`. Lines only, never the file's path.
    public var lines: [String] {
        self.rules.map { trace in
            let line = trace.location.map { ", line \($0.line)" } ?? ""
            var outcome = trace.failed.map { "failed " + $0.summary } ?? "matched"
            if let detail = trace.detail { outcome += " (" + detail + ")" }
            return "rules[\(trace.index)] (\(trace.effect.rawValue)\(line)): \(outcome)"
        }
    }
}
