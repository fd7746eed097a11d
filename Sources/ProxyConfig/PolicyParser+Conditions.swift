import Foundation
import PolicyCore
import ProxyModel
import Yams

// The structured conditions (`claims`, `client_cert`, `time`), named condition sets (`definitions:`
// and `use:`), compiled here once per load into PolicyCore's matchers.
extension PolicyParser {
    static let clientCertKeys = ["uri_sans", "dns_sans", "email_sans", "subject_cn", "spiffe_ids"]
    static let timeKeys = ["days", "hours", "timezone"]
    static let claimTestKeys = ["exists"]

    // MARK: claims

    /// `claims: { amr: mfa, "realm_access.roles": [admin, ops], email_verified: true, acr: {exists: true} }`
    func parseClaims(_ node: Node, path: String) -> [Condition]? {
        let reader = self.reader
        guard case .mapping(let mapping) = node else {
            reader.error("\(path): expected a mapping of claim names to values, got \(reader.kind(node).phrase)", at: node)
            return nil
        }
        if mapping.isEmpty {
            reader.error("\(path): empty mapping; name at least one claim", at: node)
            return nil
        }
        var conditions: [Condition] = []
        var failed = false
        for (name, keyNode, value) in reader.pairs(mapping, path: path, place: "in \(path)") {
            let claimPath = "\(path).\(name)"
            guard let segments = ClaimMatcher.parsePath(name) else {
                reader.error(
                    "\(path): invalid claim path '\(name)' (segments separated by '.', a segment with dots in brackets: '[https://example.com/roles]')",
                    at: keyNode
                )
                failed = true
                continue
            }
            if case .mapping = value {
                guard let fields = reader.fields(value, path: claimPath, place: "in \(claimPath)", allowed: Self.claimTestKeys),
                    let entry = reader.required(fields, "exists", context: claimPath),
                    let exists = reader.bool(entry.value, path: "\(claimPath).exists")
                else {
                    failed = true
                    continue
                }
                conditions.append(.claim(ClaimMatcher(path: segments, name: name, test: .exists(exists))))
                continue
            }
            let items: [Node]
            if case .sequence(let sequence) = value {
                items = Array(sequence)
                if items.isEmpty {
                    reader.error("\(claimPath): empty list; it could never match (remove the claim, or the rule)", at: value)
                    failed = true
                    continue
                }
            } else {
                items = [value]
            }
            var values: Set<ClaimScalar> = []
            for (offset, item) in items.enumerated() {
                let itemPath = value.sequence == nil ? claimPath : "\(claimPath)[\(offset)]"
                if let scalar = self.claimScalar(item, path: itemPath) {
                    values.insert(scalar)
                } else {
                    failed = true
                }
            }
            conditions.append(.claim(ClaimMatcher(path: segments, name: name, test: .anyOf(values))))
        }
        return failed ? nil : conditions
    }

    /// A string, integer, number or boolean as YAML types it (quote `"true"` to mean the text).
    private func claimScalar(_ node: Node, path: String) -> ClaimScalar? {
        let reader = self.reader
        guard case .scalar(let scalar) = node else {
            reader.error(
                "\(path): expected a string, number or boolean (or {exists: true}), got \(reader.kind(node).phrase)",
                at: node
            )
            return nil
        }
        switch reader.kind(node) {
        case .string:
            return .string(reader.source.text(scalar.string))
        case .boolean:
            guard let value = reader.bool(node, path: path) else { return nil }
            return .bool(value)
        case .integer:
            guard let value = NodeReader.integerValue(scalar.string) else {
                reader.error("\(path): integer out of range", at: node)
                return nil
            }
            return .integer(Int64(value))
        case .number:
            guard let value = Double(scalar.string), value.isFinite else {
                reader.error("\(path): expected a finite number", at: node)
                return nil
            }
            return ClaimScalar(.number(value))
        case .null:
            reader.error("\(path): null never matches; use {exists: false} for a missing claim", at: node)
            return nil
        case .mapping, .list:
            return nil
        }
    }

    // MARK: client_cert

    /// `client_cert: { spiffe_ids: ["spiffe://example.com/ns/jobs/*"], dns_sans: [...], subject_cn: [...] }`
    func parseClientCert(_ node: Node, path: String) -> [Condition]? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.clientCertKeys) else {
            return nil
        }
        if fields.order.isEmpty {
            reader.error("\(path): empty mapping; name at least one of \(Self.clientCertKeys.joined(separator: ", "))", at: node)
            return nil
        }
        let emptyReason = "it could never match (remove the condition, or the rule)"
        var conditions: [Condition] = []
        var failed = false
        for key in fields.order {
            let entry = fields[key]!
            let valuePath = "\(path).\(key)"
            guard let values = reader.strings(entry.value, path: valuePath, allowSingle: true, emptyReason: emptyReason)
            else {
                failed = true
                continue
            }
            let single = entry.value.sequence == nil
            func itemPath(_ offset: Int) -> String { single ? valuePath : "\(valuePath)[\(offset)]" }
            var patterns: [NamePattern] = []
            for (offset, (text, valueNode)) in values.enumerated() {
                let problem: String?
                switch key {
                case "uri_sans": problem = Self.uriPatternProblem(text)
                case "spiffe_ids": problem = Self.spiffePatternProblem(text)
                case "dns_sans": problem = Self.dnsPatternProblem(text)
                case "email_sans": problem = text.contains("@") ? nil : "'\(text)' is not an email address"
                default: problem = text.isEmpty ? "must not be empty" : nil
                }
                if let problem {
                    reader.error("\(itemPath(offset)): \(problem)", at: valueNode)
                    failed = true
                    continue
                }
                if text.hasSuffix("/*") {
                    patterns.append(.pathPrefix(String(text.dropLast())))
                } else if text.hasPrefix("*.") {
                    patterns.append(.dnsWildcard(suffix: String(text.dropFirst()).lowercased()))
                } else if key == "dns_sans" {
                    patterns.append(.exact(text.lowercased()))
                } else {
                    patterns.append(.exact(text))
                }
            }
            switch key {
            case "uri_sans": conditions.append(.clientCert(.uriSANs(patterns)))
            case "spiffe_ids": conditions.append(.clientCert(.spiffeIDs(patterns)))
            case "dns_sans": conditions.append(.clientCert(.dnsSANs(patterns)))
            case "email_sans": conditions.append(.clientCert(.emailSANs(Set(values.map { $0.0.lowercased() }))))
            default: conditions.append(.clientCert(.subjectCN(Set(values.map(\.0)))))
            }
        }
        return failed ? nil : conditions
    }

    static func uriPatternProblem(_ text: String) -> String? {
        guard let colon = text.firstIndex(of: ":"), colon != text.startIndex,
            text[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) })
        else { return "'\(text)' is not a URI (expected like spiffe://example.com/ns/jobs or https://example.com/x)" }
        if text.dropLast(text.hasSuffix("/*") ? 2 : 0).contains("*") {
            return "'\(text)': '*' is only allowed as a final '/*'"
        }
        if text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
            return "'\(text)' contains spaces or control characters"
        }
        return nil
    }

    /// SPIFFE ID syntax (SPIFFE-ID 2): `spiffe://` + a lower-case trust domain + a path of segments made of
    /// letters, digits, `.`, `-` and `_`; no query, fragment, port, user info or trailing `/`.
    static func spiffePatternProblem(_ text: String) -> String? {
        let example = "expected like spiffe://example.com/ns/jobs/sa/worker, or spiffe://example.com/ns/jobs/* for everything below"
        guard text.hasPrefix("spiffe://") else { return "'\(text)' is not a SPIFFE ID (\(example))" }
        var rest = text.dropFirst("spiffe://".count)
        var isPrefix = false
        if rest.hasSuffix("/*") {
            isPrefix = true
            rest = rest.dropLast(2)
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let domain = rest[..<slash]
        let domainOK = !domain.isEmpty
            && domain.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || ".-_".contains($0) }
        guard domainOK else {
            return "'\(text)': the trust domain must be lower-case letters, digits, '.', '-' and '_' (\(example))"
        }
        let pathPart = rest[slash...]
        if pathPart.isEmpty { return isPrefix ? nil : "'\(text)' names a trust domain, not a workload; write '\(text)/*' to accept every ID in it" }
        for segment in pathPart.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            let valid = !segment.isEmpty && segment != "." && segment != ".."
                && segment.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || ".-_".contains($0)) }
            if !valid { return "'\(text)': invalid path segment '\(segment)' (\(example))" }
        }
        return nil
    }

    static func dnsPatternProblem(_ text: String) -> String? {
        let name = text.hasPrefix("*.") ? String(text.dropFirst(2)) : text
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        let valid = !name.isEmpty && labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
        return valid ? nil : "'\(text)' is not a DNS name (a '*.' in front covers one label)"
    }

    // MARK: time

    /// `time: { days: [mon, tue, wed, thu, fri], hours: "09:00-17:00", timezone: Europe/Berlin }`
    func parseTime(_ node: Node, path: String) -> TimeWindow? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.timeKeys) else {
            return nil
        }
        if fields["days"] == nil && fields["hours"] == nil {
            reader.error("\(path): needs 'days', 'hours' or both", at: node)
            return nil
        }
        var failed = false
        var days: Set<Weekday>?
        if let entry = fields["days"] {
            if let values = reader.strings(entry.value, path: "\(path).days", allowSingle: true, emptyReason: "it could never match") {
                var set: Set<Weekday> = []
                for (offset, (text, valueNode)) in values.enumerated() {
                    if let parsed = Self.dayRange(text) {
                        set.formUnion(parsed)
                    } else {
                        let itemPath = entry.value.sequence == nil ? "\(path).days" : "\(path).days[\(offset)]"
                        reader.error("\(itemPath): '\(text)' is not a day (mon, tue, ... sun, or a range like mon-fri)", at: valueNode)
                        failed = true
                    }
                }
                days = set
            } else {
                failed = true
            }
        }
        var hours: [TimeWindow.MinuteRange] = []
        if let entry = fields["hours"] {
            if let values = reader.strings(entry.value, path: "\(path).hours", allowSingle: true, emptyReason: "it could never match") {
                for (offset, (text, valueNode)) in values.enumerated() {
                    let itemPath = entry.value.sequence == nil ? "\(path).hours" : "\(path).hours[\(offset)]"
                    switch Self.minuteRange(text) {
                    case .success(let range): hours.append(range)
                    case .failure(let problem):
                        reader.error("\(itemPath): \(problem.message)", at: valueNode)
                        failed = true
                    }
                }
            } else {
                failed = true
            }
        }
        var zone = UTCOffsetTable.utc
        if let entry = fields["timezone"], let name = reader.nonEmptyString(entry.value, path: "\(path).timezone") {
            if let table = self.offsetTable(name) {
                zone = table
            } else {
                var message = "\(path).timezone: unknown time zone '\(name)' (an IANA name like Europe/Berlin, or UTC)"
                if let suggestion = ValueSyntax.suggestion(for: name, among: TimeZone.knownTimeZoneIdentifiers) {
                    message += " (did you mean '\(suggestion)'?)"
                }
                reader.error(message, at: entry.value)
                failed = true
            }
        } else if fields["timezone"] != nil {
            failed = true
        }
        return failed ? nil : TimeWindow(days: days, hours: hours, zone: zone)
    }

    /// `mon`, `monday`, or a range `mon-fri` (wrapping: `fri-mon` is fri, sat, sun, mon).
    static func dayRange(_ text: String) -> Set<Weekday>? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        switch parts.count {
        case 1: return Weekday(name: parts[0]).map { [$0] }
        case 2:
            guard let first = Weekday(name: parts[0]), let last = Weekday(name: parts[1]) else { return nil }
            var set: Set<Weekday> = [first]
            var day = first
            while day != last {
                day = Weekday(rawValue: (day.rawValue + 1) % 7)!
                set.insert(day)
            }
            return set
        default: return nil
        }
    }

    /// `HH:MM-HH:MM` (24-hour; `24:00` only as an end). An end before the start wraps past midnight.
    static func minuteRange(_ text: String) -> Result<TimeWindow.MinuteRange, PatternError> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        func minute(_ s: String, end: Bool) -> Int? {
            let pieces = s.split(separator: ":", omittingEmptySubsequences: false)
            guard pieces.count == 2, pieces[0].count == 2, pieces[1].count == 2,
                let h = Int(pieces[0]), let m = Int(pieces[1]), (0...59).contains(m)
            else { return nil }
            if h == 24 && m == 0 && end { return 1440 }
            guard (0...23).contains(h) else { return nil }
            return h * 60 + m
        }
        guard parts.count == 2, let start = minute(parts[0], end: false), let end = minute(parts[1], end: true) else {
            return .failure(PatternError("'\(text)' is not a time range (expected HH:MM-HH:MM, like 09:00-17:30 or 22:00-06:00)"))
        }
        if start == end % 1440 {
            return .failure(PatternError("'\(text)' is empty or the whole day; leave 'hours' out for the whole day"))
        }
        return .success(TimeWindow.MinuteRange(start: start, end: end))
    }

    /// The zone's UTC offsets from 1970 to 2100, from the system's time zone database. nil when unknown.
    func offsetTable(_ name: String) -> UTCOffsetTable? {
        if let cached = self.zoneCache[name] { return cached }
        guard let zone = TimeZone(identifier: name) else { return nil }
        let start = Date(timeIntervalSince1970: 0)
        let end = Date(timeIntervalSince1970: 4_102_444_800)  // 2100-01-01
        var transitions: [Int64] = []
        var offsets: [Int32] = []
        var cursor = start
        while let next = zone.nextDaylightSavingTimeTransition(after: cursor), next < end, transitions.count < 1000 {
            transitions.append(Int64(next.timeIntervalSince1970.rounded()))
            offsets.append(Int32(zone.secondsFromGMT(for: next)))
            cursor = next
        }
        let table = UTCOffsetTable(
            name: name,
            initialOffset: Int32(zone.secondsFromGMT(for: start)),
            transitions: transitions,
            offsets: offsets
        )
        self.zoneCache[name] = table
        return table
    }

    // MARK: definitions and use

    /// Records the `definitions:` entries; each is parsed when first used (or at the end, if unused),
    /// so order in the file does not matter and a cycle is reported with its chain.
    func collectDefinitions(_ node: Node) {
        let reader = self.reader
        guard case .mapping(let mapping) = node else {
            reader.error("definitions: expected a mapping of names to condition sets, got \(reader.kind(node).phrase)", at: node)
            self.definitionsUnreadable = true
            return
        }
        for (name, keyNode, value) in reader.pairs(mapping, path: "definitions", place: "in definitions") {
            guard ValueSyntax.isValidName(name) else {
                reader.error(
                    "definitions: invalid name '\(name)' (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64)",
                    at: keyNode
                )
                self.definitionsUnreadable = true
                continue
            }
            self.definitionNodes[name] = (keyNode, value)
            self.definitionOrder.append(name)
        }
    }

    /// A definition's compiled conditions (nil when it has errors, which are reported once).
    func definition(_ name: String, issuers: [String: IssuerInfo]?) -> [Condition]? {
        if let done = self.resolvedDefinitions[name] { return done }
        guard let (keyNode, value) = self.definitionNodes[name] else { return nil }
        if let cycleStart = self.resolvingDefinitions.firstIndex(of: name) {
            let chain = (self.resolvingDefinitions[cycleStart...] + [name]).joined(separator: " -> ")
            self.reader.error("definitions.\(name): uses itself (\(chain))", at: keyNode)
            self.resolvedDefinitions[name] = .some(nil)
            return nil
        }
        self.resolvingDefinitions.append(name)
        defer { self.resolvingDefinitions.removeLast() }
        let path = "definitions.\(name)"
        var conditions: [Condition]?
        if case .mapping(let mapping) = value, mapping.isEmpty {
            self.reader.error("\(path): empty condition set; it would hold for every request", at: value)
        } else if case .mapping = value {
            let context = RuleContext(routeLabel: "definition '\(name)'", isPublic: nil, authIssuers: nil, issuers: issuers)
            conditions = self.parseConditions(value, path: path, context: context)
        } else {
            self.reader.error("\(path): expected a mapping of conditions, got \(self.reader.kind(value).phrase)", at: value)
        }
        if self.resolvedDefinitions[name] == nil { self.resolvedDefinitions[name] = .some(conditions) }
        return self.resolvedDefinitions[name]!
    }

    /// `use: admins` or `use: [admins, oncall]` (any of them).
    func parseUse(_ node: Node, path: String, context: RuleContext) -> Condition? {
        let reader = self.reader
        guard let values = reader.strings(node, path: path, allowSingle: true, emptyReason: "it could never match") else {
            return nil
        }
        var references: [DefinitionReference] = []
        var failed = false
        for (offset, (name, valueNode)) in values.enumerated() {
            let itemPath = node.sequence == nil ? path : "\(path)[\(offset)]"
            guard self.definitionNodes[name] != nil else {
                if !self.definitionsUnreadable {
                    var message = "\(itemPath): definition '\(name)' does not exist"
                    if self.definitionOrder.isEmpty {
                        message += " (there is no 'definitions:' section)"
                    } else if let suggestion = ValueSyntax.suggestion(for: name, among: self.definitionOrder) {
                        message += " (did you mean '\(suggestion)'?)"
                    }
                    reader.error(message, at: valueNode)
                }
                failed = true
                continue
            }
            self.usedDefinitions.insert(name)
            guard let conditions = self.definition(name, issuers: context.issuers) else {
                failed = true
                continue
            }
            references.append(DefinitionReference(name: name, conditions: conditions))
        }
        return failed ? nil : .anyOf(references)
    }

    /// Parses the definitions no rule used (so their errors are reported too) and warns about them.
    func finishDefinitions(issuers: [String: IssuerInfo]?) {
        for name in self.definitionOrder where !self.usedDefinitions.contains(name) {
            _ = self.definition(name, issuers: issuers)
            if let (keyNode, _) = self.definitionNodes[name] {
                self.reader.warning("definitions.\(name): never used", at: keyNode)
            }
        }
    }
}
