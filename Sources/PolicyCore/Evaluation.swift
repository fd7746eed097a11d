import ProxyModel

// Rule evaluation: the first rule whose conditions all hold decides; default deny.

func _evaluate(_ policy: RoutePolicy, facts: RequestFacts, principal: Principal?) -> Decision {
    if !policy.isPublic && principal == nil {
        return .deny(reason: .unauthenticated, rule: nil)
    }
    if policy.rules.isEmpty {
        return policy.isPublic ? .allow(rule: nil) : .deny(reason: .noRuleMatched, rule: nil)
    }
    for (index, rule) in policy.rules.enumerated() {
        let holds = rule.conditions.allSatisfy {
            $0.holds(facts: facts, principal: principal, routePathPrefix: policy.pathPrefix)
        }
        guard holds else { continue }
        switch rule.effect {
        case .allow: return .allow(rule: index)
        case .deny: return .deny(reason: .deniedByRule, rule: index)
        }
    }
    return .deny(reason: .noRuleMatched, rule: nil)
}

func _conditionHolds(
    _ condition: Condition,
    facts: RequestFacts,
    principal: Principal?,
    routePathPrefix: String
) -> Bool {
    switch condition {
    case .authenticated(let expected):
        return (principal != nil) == expected
    case .methods(let methods):
        return methods.contains(facts.method)
    case .paths(let patterns):
        guard let relative = ConditionMatching.relativePath(facts.path, routePrefix: routePathPrefix) else {
            return false
        }
        return patterns.contains { PathMatching.matches($0, relative) }
    case .sourceCIDRs(let blocks):
        guard let address = facts.clientAddress else { return false }
        return blocks.contains { $0.contains(address) }
    case .groups(let groups):
        guard let principal else { return false }
        return principal.groups.contains { groups.contains($0) }
    case .emails(let emails):
        guard let email = principal?.email else { return false }
        return emails.contains(ConditionMatching.lowercased(email))
    case .emailDomains(let domains):
        guard let email = principal?.email, let at = email.utf8.lastIndex(of: UInt8(ascii: "@")) else {
            return false
        }
        let domain = email[email.utf8.index(after: at)...]
        guard !domain.isEmpty else { return false }
        return domains.contains(ConditionMatching.lowercased(String(domain)))
    case .subjects(let subjects):
        guard let subject = principal?.subject else { return false }
        return subjects.contains(subject)
    case .issuers(let issuers):
        guard let issuer = principal?.issuer else { return false }
        return issuers.contains(issuer)
    }
}

func _conditionKey(_ condition: Condition) -> String {
    switch condition {
    case .authenticated: return "authenticated"
    case .methods: return "methods"
    case .paths: return "paths"
    case .sourceCIDRs: return "source_cidrs"
    case .groups: return "groups"
    case .emails: return "emails"
    case .emailDomains: return "email_domains"
    case .subjects: return "subjects"
    case .issuers: return "issuers"
    }
}

enum ConditionMatching {
    /// The request path relative to the route's prefix: `/api/*` and `/api/jobs/1` give `/jobs/1`,
    /// `/api` itself gives `/`. nil when the path is not under the prefix at all (the route did not
    /// match it), in which case no `paths` condition holds.
    static func relativePath(_ path: String, routePrefix: String) -> Substring? {
        if routePrefix.isEmpty { return Substring(path) }
        guard PathMatching.isUnder(Substring(path), prefix: routePrefix) else { return nil }
        let rest = path.utf8.dropFirst(routePrefix.utf8.count)
        if rest.isEmpty { return "/" }
        return path[rest.startIndex...]
    }

    /// Lower-cased; without a copy when there is nothing to lower.
    static func lowercased(_ text: String) -> String {
        for byte in text.utf8 where byte >= 0x80 || (byte >= 0x41 && byte <= 0x5A) {
            return text.lowercased()
        }
        return text
    }
}
