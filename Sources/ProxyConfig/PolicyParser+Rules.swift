import PolicyCore
import ProxyModel
import Yams

// `rules:` of a route and their conditions.
extension PolicyParser {
    // MARK: rules

    struct RuleContext {
        var routeLabel: String
        /// nil inside `definitions:` (used by public and auth routes alike).
        var isPublic: Bool?
        /// The route's `auth.issuers` (nil when the route has no valid `auth`).
        var authIssuers: [String]?
        /// nil when `issuers:` was unreadable.
        var issuers: [String: IssuerInfo]?
    }

    func parseRules(_ node: Node, path: String, context: RuleContext) -> [Rule] {
        let reader = self.reader
        guard let items = reader.list(node, path: path) else { return [] }
        var rules: [Rule] = []
        for (index, item) in items.enumerated() {
            let itemPath = "\(path)[\(index)]"
            guard case .mapping(let mapping) = item else {
                reader.error(
                    "\(itemPath): expected a mapping with 'allow' or 'deny', got \(reader.kind(item).phrase)",
                    at: item
                )
                continue
            }
            if mapping.isEmpty {
                reader.error("\(itemPath): a rule needs 'allow' or 'deny'", at: item)
                continue
            }
            guard let fields = reader.fields(item, path: itemPath, place: "in \(itemPath)", allowed: Self.ruleKeys)
            else {
                continue
            }
            guard let effectKey = fields.order.first, let entry = fields[effectKey] else { continue }
            for extra in fields.order.dropFirst() {
                reader.error(
                    "\(itemPath): a rule has exactly one key, 'allow' or 'deny'; this one also has '\(extra)'",
                    at: fields[extra]!.key
                )
            }
            let effect: RuleEffect = effectKey == "allow" ? .allow : .deny
            let conditionsPath = "\(itemPath).\(effectKey)"
            if reader.kind(entry.value) == .null {
                rules.append(Rule(effect: effect, conditions: [], location: reader.location(entry.key)))
                continue
            }
            guard case .mapping = entry.value else {
                reader.error(
                    "\(conditionsPath): expected a mapping of conditions (or nothing, meaning always), got \(reader.kind(entry.value).phrase)",
                    at: entry.value
                )
                continue
            }
            if let conditions = self.parseConditions(entry.value, path: conditionsPath, context: context) {
                rules.append(Rule(effect: effect, conditions: conditions, location: reader.location(entry.key)))
            }
        }
        return rules
    }

    func parseConditions(_ node: Node, path: String, context: RuleContext) -> [Condition]? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.conditionKeys) else {
            return nil
        }
        let emptyReason = "it could never match (remove the condition, or the rule)"
        var conditions: [Condition] = []
        var failed = false
        for key in fields.order {
            let entry = fields[key]!
            let valuePath = "\(path).\(key)"
            if context.isPublic == true && Self.identityConditionKeys.contains(key) {
                reader.warning("\(valuePath): can never hold: public routes carry no identity", at: entry.key)
            }
            switch key {
            case "claims":
                if let parsed = self.parseClaims(entry.value, path: valuePath) { conditions += parsed } else { failed = true }
                continue
            case "client_cert":
                if let parsed = self.parseClientCert(entry.value, path: valuePath) {
                    conditions += parsed
                } else {
                    failed = true
                }
                continue
            case "time":
                if let window = self.parseTime(entry.value, path: valuePath) {
                    conditions.append(.time(window))
                } else {
                    failed = true
                }
                continue
            case "use":
                if let condition = self.parseUse(entry.value, path: valuePath, context: context) {
                    conditions.append(condition)
                } else {
                    failed = true
                }
                continue
            default:
                break
            }
            if key == "authenticated" {
                guard let value = reader.bool(entry.value, path: valuePath) else {
                    failed = true
                    continue
                }
                if value && context.isPublic == true {
                    reader.warning("\(valuePath): can never hold: public routes carry no identity", at: entry.key)
                } else if !value && context.isPublic == false {
                    reader.warning(
                        "\(valuePath): can never hold: \(context.routeLabel) requires identity, so requests without one get 401 before rules run",
                        at: entry.key
                    )
                }
                conditions.append(.authenticated(value))
                continue
            }
            guard let values = reader.strings(entry.value, path: valuePath, allowSingle: true, emptyReason: emptyReason)
            else {
                failed = true
                continue
            }
            let single: Bool
            if case .scalar = entry.value { single = true } else { single = false }
            func itemPath(_ offset: Int) -> String { single ? valuePath : "\(valuePath)[\(offset)]" }
            var itemFailed = false
            func check(_ ok: Bool, _ offset: Int, _ node: Node, _ message: @autoclosure () -> String) {
                if !ok {
                    reader.error("\(itemPath(offset)): \(message())", at: node)
                    itemFailed = true
                }
            }
            for (offset, (text, valueNode)) in values.enumerated() where text.isEmpty {
                check(false, offset, valueNode, "must not be empty")
            }
            switch key {
            case "methods":
                for (offset, (text, valueNode)) in values.enumerated() where !text.isEmpty {
                    check(ValueSyntax.isToken(text), offset, valueNode, "'\(text)' is not a valid HTTP method")
                }
                conditions.append(.methods(Set(values.map { $0.0.uppercased() })))
            case "paths":
                var patterns: [PathPattern] = []
                for (offset, (text, valueNode)) in values.enumerated() {
                    switch PathPattern.parse(text) {
                    case .success(let pattern): patterns.append(pattern)
                    case .failure(let failure): check(false, offset, valueNode, failure.message)
                    }
                }
                conditions.append(.paths(patterns))
            case "source_cidrs":
                var blocks: [CIDR] = []
                for (offset, (text, valueNode)) in values.enumerated() {
                    if let block = CIDR.parse(text) {
                        blocks.append(block)
                    } else {
                        check(
                            false,
                            offset,
                            valueNode,
                            "invalid CIDR '\(text)' (expected like 10.0.0.0/8 or 2001:db8::/32)"
                        )
                    }
                }
                conditions.append(.sourceCIDRs(blocks))
            case "groups":
                conditions.append(.groups(Set(values.map(\.0))))
            case "subjects":
                conditions.append(.subjects(Set(values.map(\.0))))
            case "emails":
                for (offset, (text, valueNode)) in values.enumerated() where !text.isEmpty {
                    check(text.contains("@"), offset, valueNode, "'\(text)' is not an email address")
                }
                conditions.append(.emails(Set(values.map { $0.0.lowercased() })))
            case "email_domains":
                for (offset, (text, valueNode)) in values.enumerated() where !text.isEmpty {
                    check(
                        !text.contains("@"),
                        offset,
                        valueNode,
                        "'\(text)': write the domain without '@' (example.com)"
                    )
                }
                conditions.append(.emailDomains(Set(values.map { $0.0.lowercased() })))
            case "issuers":
                for (offset, (text, valueNode)) in values.enumerated() where !text.isEmpty {
                    if let known = context.issuers, known[text] == nil {
                        check(false, offset, valueNode, self.unknownIssuer(text, issuers: known))
                    } else if let accepted = context.authIssuers, !accepted.contains(text), context.isPublic == false {
                        reader.warning(
                            "\(itemPath(offset)): can never hold: \(context.routeLabel) accepts tokens only from \(accepted.map { "'\($0)'" }.joined(separator: ", "))",
                            at: valueNode
                        )
                    }
                }
                // Compiled to the issuers' URLs: an identity carries the `iss` it was verified for, not a name.
                let urls = values.compactMap { context.issuers?[$0.0]?.url }
                if urls.count == values.count { conditions.append(.issuers(Set(urls))) } else { itemFailed = true }
            default:
                break
            }
            failed = failed || itemFailed
        }
        return failed ? nil : conditions
    }
}

// MARK: - Static analysis of a route's rules

extension PolicyParser {
    /// Warnings that need the whole route: rules an earlier rule makes unreachable, allow rules that
    /// admit every caller on an `auth` route, and `auth` routes without rules (they allow nobody).
    func analyseRules(
        _ rules: [Rule],
        label: String,
        path: String,
        isPublic: Bool,
        auth: RouteAuthConfig?,
        rulesNode: Node?,
        routeNode: Node
    ) {
        let reader = self.reader
        func warn(_ message: String, rule: Rule) {
            if let location = rule.location {
                reader.report(ConfigDiagnostic(.warning, message, at: location))
            } else {
                reader.warning(message, at: rulesNode ?? routeNode)
            }
        }
        if !isPublic && auth != nil && rules.isEmpty {
            reader.warning(
                "\(label) requires identity but has no rules, so it allows nobody (every caller gets 403); add 'rules:' with allow rules",
                at: rulesNode ?? routeNode
            )
        }
        for shadowing in PolicyAnalysis.shadowedRules(rules, isPublic: isPublic) {
            let later = rules[shadowing.rule]
            let earlier = rules[shadowing.coveredBy]
            let earlierLine = earlier.location.map { ", line \($0.line)" } ?? ""
            let rulePath = "\(path).rules[\(shadowing.rule)]"
            if shadowing.sameEffect {
                warn(
                    "\(rulePath) is redundant: rules[\(shadowing.coveredBy)] (\(earlier.effect.rawValue)\(earlierLine)) matches every request it matches",
                    rule: later
                )
            } else {
                warn(
                    "\(rulePath) (\(later.effect.rawValue)) never decides: rules[\(shadowing.coveredBy)] (\(earlier.effect.rawValue)\(earlierLine)) matches every request it matches and decides first",
                    rule: later
                )
            }
        }
        if let auth, !isPublic {
            let sources = auth.issuers.count + (auth.clientCert != nil ? 1 : 0)
            for (index, rule) in rules.enumerated() where PolicyAnalysis.allowsEveryone(rule, identitySources: sources) {
                warn(
                    "\(path).rules[\(index)]: allows every caller with a valid identity for \(label) (no condition on who: groups, emails, email_domains, subjects, claims or client_cert); add 'authenticated: true' to the rule if that is intended",
                    rule: rule
                )
            }
        }
    }
}
