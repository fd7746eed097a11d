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
        // Walk the smaller side: a rule names a group or two, a token may carry dozens (string equality
        // on the token's array is cheaper than hashing each of its groups).
        if groups.count <= principal.groups.count {
            return groups.contains { principal.groups.contains($0) }
        }
        return principal.groups.contains { groups.contains($0) }
    case .emails(let emails):
        guard let email = principal?.email else { return false }
        return emails.contains(PolicyText.lowercased(email))
    case .emailDomains(let domains):
        guard let email = principal?.email, let at = email.utf8.lastIndex(of: UInt8(ascii: "@")) else {
            return false
        }
        let domain = email[email.utf8.index(after: at)...]
        guard !domain.isEmpty else { return false }
        return domains.contains(PolicyText.lowercased(String(domain)))
    case .subjects(let subjects):
        guard let subject = principal?.subject else { return false }
        return subjects.contains(subject)
    case .issuers(let issuers):
        guard let issuer = principal?.issuer else { return false }
        return issuers.contains(issuer)
    case .claim(let matcher):
        guard let principal else { return false }
        return matcher.holds(principal.claims)
    case .clientCert(let matcher):
        guard let certificate = principal?.clientCertificate else { return false }
        return matcher.holds(certificate)
    case .time(let window):
        return window.holds(at: facts.time)
    case .anyOf(let definitions):
        return definitions.contains { definition in
            definition.conditions.allSatisfy {
                _conditionHolds($0, facts: facts, principal: principal, routePathPrefix: routePathPrefix)
            }
        }
    }
}

func _explain(_ policy: RoutePolicy, facts: RequestFacts, principal: Principal?) -> PolicyExplanation {
    if !policy.isPublic && principal == nil {
        return PolicyExplanation(decision: .deny(reason: .unauthenticated, rule: nil), rules: [])
    }
    if policy.rules.isEmpty {
        return PolicyExplanation(
            decision: policy.isPublic ? .allow(rule: nil) : .deny(reason: .noRuleMatched, rule: nil),
            rules: []
        )
    }
    var traces: [PolicyExplanation.RuleTrace] = []
    for (index, rule) in policy.rules.enumerated() {
        let failed = rule.conditions.first {
            !$0.holds(facts: facts, principal: principal, routePathPrefix: policy.pathPrefix)
        }
        traces.append(
            .init(
                index: index,
                effect: rule.effect,
                location: rule.location,
                failed: failed,
                detail: failed.flatMap { _useDetail($0, facts: facts, principal: principal, prefix: policy.pathPrefix) }
            )
        )
        guard failed == nil else { continue }
        switch rule.effect {
        case .allow: return PolicyExplanation(decision: .allow(rule: index), rules: traces)
        case .deny: return PolicyExplanation(decision: .deny(reason: .deniedByRule, rule: index), rules: traces)
        }
    }
    return PolicyExplanation(decision: .deny(reason: .noRuleMatched, rule: nil), rules: traces)
}

/// Why a failed `use:` failed: the first failing condition of each named set.
func _useDetail(_ condition: Condition, facts: RequestFacts, principal: Principal?, prefix: String) -> String? {
    guard case .anyOf(let definitions) = condition else { return nil }
    return definitions.map { definition in
        let failed = definition.conditions.first {
            !$0.holds(facts: facts, principal: principal, routePathPrefix: prefix)
        }
        guard let failed else { return definition.name + ": holds" }
        let inner = _useDetail(failed, facts: facts, principal: principal, prefix: prefix)
        return definition.name + ": failed " + failed.summary + (inner.map { " (" + $0 + ")" } ?? "")
    }.joined(separator: "; ")
}

func _conditionSummary(_ condition: Condition) -> String {
    func list<S: Sequence>(_ items: S) -> String where S.Element: CustomStringConvertible {
        "[" + items.map(\.description).joined(separator: ", ") + "]"
    }
    func sortedList(_ items: Set<String>) -> String { list(items.sorted()) }
    switch condition {
    case .authenticated(let value): return "authenticated: \(value)"
    case .methods(let methods): return "methods: any of \(sortedList(methods))"
    case .paths(let patterns): return "paths: any of \(list(patterns))"
    case .sourceCIDRs(let blocks): return "source_cidrs: any of \(list(blocks))"
    case .groups(let groups): return "groups: any of \(sortedList(groups))"
    case .emails(let emails): return "emails: any of \(sortedList(emails))"
    case .emailDomains(let domains): return "email_domains: any of \(sortedList(domains))"
    case .subjects(let subjects): return "subjects: any of \(sortedList(subjects))"
    case .issuers(let issuers): return "issuers: any of \(sortedList(issuers))"
    case .claim(let matcher):
        switch matcher.test {
        case .exists(true): return "claims.\(matcher.name): present"
        case .exists(false): return "claims.\(matcher.name): absent"
        case .anyOf(let values): return "claims.\(matcher.name): any of \(list(values.map(\.description).sorted()))"
        }
    case .clientCert(let matcher):
        switch matcher {
        case .uriSANs(let patterns), .dnsSANs(let patterns), .spiffeIDs(let patterns):
            return "client_cert.\(matcher.key): any of \(list(patterns))"
        case .emailSANs(let values), .subjectCN(let values):
            return "client_cert.\(matcher.key): any of \(sortedList(values))"
        }
    case .time(let window): return "time: \(window.summary)"
    case .anyOf(let definitions): return "use: any of \(list(definitions.map(\.name)))"
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
    case .claim(let matcher): return "claims." + matcher.name
    case .clientCert(let matcher): return "client_cert." + matcher.key
    case .time: return "time"
    case .anyOf: return "use"
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
}
