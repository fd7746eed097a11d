import ProxyModel

/// Static checks over a route's rules for `portcullis check`: rules that can never decide because an
/// earlier rule matches every request they match, and allow rules that admit every caller.
///
/// "Matches every request it matches" is proven condition by condition: rule A covers rule B when each
/// condition of A is equal to or wider than a condition of B on the same key (`groups: [a, b]` is wider
/// than `groups: [a]`, `/api/*` wider than `/api/jobs`). What cannot be proven is not reported.
public enum PolicyAnalysis {
    /// A rule that an earlier one makes unreachable.
    public struct Shadowing: Sendable, Equatable {
        /// The unreachable rule and the earlier rule that covers it (indexes in the route).
        public var rule: Int
        public var coveredBy: Int
        /// Both rules have the same effect: the later one is only redundant.
        public var sameEffect: Bool

        public init(rule: Int, coveredBy: Int, sameEffect: Bool) {
            self.rule = rule
            self.coveredBy = coveredBy
            self.sameEffect = sameEffect
        }
    }

    /// At most this many alternatives are expanded from `use:` lists; larger rules are not analysed.
    static let maxAlternatives = 256

    public static func shadowedRules(_ rules: [Rule], isPublic: Bool) -> [Shadowing] {
        var found: [Shadowing] = []
        let expanded = rules.map { Self.alternatives($0.conditions) }
        for (later, alternativesOfLater) in expanded.enumerated() {
            guard let alternativesOfLater else { continue }
            for earlier in 0..<later {
                let covers = alternativesOfLater.allSatisfy {
                    Self.covers(rules[earlier].conditions, $0, isPublic: isPublic)
                }
                if covers {
                    found.append(
                        Shadowing(rule: later, coveredBy: earlier, sameEffect: rules[earlier].effect == rules[later].effect)
                    )
                    break
                }
            }
        }
        return found
    }

    /// Whether an allow rule admits every caller that has an identity: no condition of one of its
    /// alternatives says who (groups, emails, subjects, claims, client certificate, ...). `authenticated:
    /// true` written out says "everyone, on purpose" and counts as saying who. `issuers` says who only
    /// when the route accepts more than one identity source.
    public static func allowsEveryone(_ rule: Rule, identitySources: Int) -> Bool {
        guard rule.effect == .allow, let alternatives = Self.alternatives(rule.conditions) else { return false }
        return alternatives.contains { conditions in
            !conditions.contains { condition in
                switch condition {
                case .authenticated(true), .groups, .emails, .emailDomains, .subjects, .claim, .clientCert: return true
                case .issuers: return identitySources > 1
                case .authenticated(false), .methods, .paths, .sourceCIDRs, .time, .anyOf: return false
                }
            }
        }
    }

    /// The rule's conditions with every `use:` expanded: a list of alternatives, each a flat list of
    /// conditions that must all hold. nil when there would be too many alternatives.
    static func alternatives(_ conditions: [Condition]) -> [[Condition]]? {
        var result: [[Condition]] = [[]]
        for condition in conditions {
            guard case .anyOf(let definitions) = condition else {
                for index in result.indices { result[index].append(condition) }
                continue
            }
            var next: [[Condition]] = []
            for definition in definitions {
                guard let inner = Self.alternatives(definition.conditions) else { return nil }
                for prefix in result {
                    for alternative in inner {
                        next.append(prefix + alternative)
                        if next.count > Self.maxAlternatives { return nil }
                    }
                }
            }
            result = next
        }
        return result
    }

    /// Whether every request that satisfies all of `flat` (no `use:`) satisfies all of `earlier`.
    static func covers(_ earlier: [Condition], _ flat: [Condition], isPublic: Bool) -> Bool {
        earlier.allSatisfy { condition in
            switch condition {
            case .anyOf(let definitions):
                return definitions.contains { Self.covers($0.conditions, flat, isPublic: isPublic) }
            case .authenticated(true) where !isPublic:
                // Rules of an auth route only run with an identity.
                return true
            default:
                return flat.contains { Self.covers(condition, $0) }
            }
        }
    }

    /// Whether `wide` holds whenever `narrow` holds.
    static func covers(_ wide: Condition, _ narrow: Condition) -> Bool {
        switch (wide, narrow) {
        case (.authenticated(let a), .authenticated(let b)): return a == b
        case (.methods(let a), .methods(let b)): return b.isSubset(of: a)
        case (.groups(let a), .groups(let b)),
            (.emails(let a), .emails(let b)),
            (.emailDomains(let a), .emailDomains(let b)),
            (.subjects(let a), .subjects(let b)),
            (.issuers(let a), .issuers(let b)):
            return b.isSubset(of: a)
        case (.emailDomains(let domains), .emails(let emails)):
            return emails.allSatisfy { email in
                guard let at = email.lastIndex(of: "@") else { return false }
                return domains.contains(String(email[email.index(after: at)...]))
            }
        case (.paths(let a), .paths(let b)):
            return b.allSatisfy { narrow in a.contains { Self.pathCovers($0, narrow) } }
        case (.sourceCIDRs(let a), .sourceCIDRs(let b)):
            return b.allSatisfy { narrow in
                a.contains { $0.prefixLength <= narrow.prefixLength && $0.contains(narrow.address) }
            }
        case (.claim(let a), .claim(let b)):
            guard a.path == b.path else { return false }
            switch (a.test, b.test) {
            case (.exists(let x), .exists(let y)): return x == y
            case (.exists(true), .anyOf): return true
            case (.anyOf(let x), .anyOf(let y)): return y.isSubset(of: x)
            default: return false
            }
        case (.clientCert(let a), .clientCert(let b)):
            switch (a, b) {
            case (.uriSANs(let x), .uriSANs(let y)), (.dnsSANs(let x), .dnsSANs(let y)),
                (.spiffeIDs(let x), .spiffeIDs(let y)):
                return y.allSatisfy { narrow in x.contains { narrow.isCovered(by: $0) } }
            case (.uriSANs(let x), .spiffeIDs(let y)):
                // A SPIFFE ID is a URI SAN.
                return y.allSatisfy { narrow in x.contains { narrow.isCovered(by: $0) } }
            case (.emailSANs(let x), .emailSANs(let y)), (.subjectCN(let x), .subjectCN(let y)):
                return y.isSubset(of: x)
            default: return false
            }
        case (.time(let a), .time(let b)):
            guard a.zone == b.zone else { return false }
            if let daysA = a.days {
                guard let daysB = b.days, daysB.isSubset(of: daysA) else { return false }
            }
            if a.hours.isEmpty { return true }
            return b.hours.allSatisfy { narrow in a.hours.contains { Self.rangeCovers($0, narrow) } }
        default:
            return false
        }
    }

    static func pathCovers(_ wide: PathPattern, _ narrow: PathPattern) -> Bool {
        switch (wide, narrow) {
        case (.exact(let a), .exact(let b)): return a == b
        case (.prefix(let a), .exact(let b)), (.prefix(let a), .prefix(let b)):
            return a.isEmpty || PathMatching.isUnder(Substring(b), prefix: a)
        case (.exact, .prefix): return false
        }
    }

    /// Whether minute range `wide` contains all of `narrow` (either may wrap past midnight).
    static func rangeCovers(_ wide: TimeWindow.MinuteRange, _ narrow: TimeWindow.MinuteRange) -> Bool {
        func pieces(_ r: TimeWindow.MinuteRange) -> [(Int, Int)] {
            r.start < r.end ? [(r.start, r.end)] : [(r.start, 1440), (0, r.end)].filter { $0.0 < $0.1 }
        }
        let wides = pieces(wide)
        return pieces(narrow).allSatisfy { n in wides.contains { $0.0 <= n.0 && n.1 <= $0.1 } }
    }
}
