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
    case issuers(Set<String>)

    /// Whether the condition holds for these facts and identity.
    public func holds(facts: RequestFacts, principal: Principal?, routePathPrefix: String) -> Bool {
        _conditionHolds(self, facts: facts, principal: principal, routePathPrefix: routePathPrefix)
    }

    /// The key name as written in the policy file (`methods`, `source_cidrs`, ...).
    public var key: String { _conditionKey(self) }
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

    public init(isPublic: Bool, rules: [Rule], pathPrefix: String = "") {
        self.isPublic = isPublic
        self.rules = rules
        self.pathPrefix = pathPrefix
    }

    /// First matching rule decides; none: 403 (``ReasonCode/noRuleMatched``).
    /// A public route without rules allows everything. An `auth` route without identity is denied
    /// with ``ReasonCode/unauthenticated`` before any rule runs.
    public func evaluate(facts: RequestFacts, principal: Principal?) -> Decision {
        _evaluate(self, facts: facts, principal: principal)
    }
}
