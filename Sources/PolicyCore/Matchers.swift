public import ProxyModel

// Compiled matchers for the conditions that look inside the identity (claims, client certificates) and
// at the clock. Built once per policy load; evaluation parses nothing.

/// A scalar a claim can be compared with. Numbers with no fractional part are integers, so `3` in the
/// policy equals `3` and `3.0` in a token.
public enum ClaimScalar: Sendable, Hashable, CustomStringConvertible {
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)

    /// The scalar form of a JSON value (nil for null, arrays and objects).
    public init?(_ value: JSONValue) {
        switch value {
        case .string(let s): self = .string(s)
        case .bool(let b): self = .bool(b)
        case .integer(let i): self = .integer(i)
        case .number(let d):
            if let i = value.int64Value { self = .integer(i) } else { self = .number(d) }
        case .null, .array, .object: return nil
        }
    }

    public var description: String {
        switch self {
        case .string(let s): return JSONEscaping.quoted(s)
        case .integer(let i): return String(i)
        case .number(let d): return String(d)
        case .bool(let b): return String(b)
        }
    }
}

/// One entry of `claims:`: a claim (by path into nested objects) and what it must hold.
public struct ClaimMatcher: Sendable, Hashable {
    public enum Test: Sendable, Hashable {
        /// `{exists: true}` / `{exists: false}`: the claim is present (any value, null included) or absent.
        case exists(Bool)
        /// The claim equals one of the values; a claim that is an array holds when one of its elements does.
        case anyOf(Set<ClaimScalar>)
    }

    /// Path segments: `realm_access.roles` is `["realm_access", "roles"]`; `[https://example.com/roles]`
    /// is one segment with dots in it.
    public var path: [String]
    /// The path as written in the policy file (for messages).
    public var name: String
    public var test: Test

    public init(path: [String], name: String, test: Test) {
        self.path = path
        self.name = name
        self.test = test
    }

    /// The claim's value in these claims, or nil when absent.
    public func value(in claims: [String: JSONValue]) -> JSONValue? {
        guard var current = claims[self.path[0]] else { return nil }
        for segment in self.path.dropFirst() {
            guard case .object(let object) = current, let next = object[segment] else { return nil }
            current = next
        }
        return current
    }

    public func holds(_ claims: [String: JSONValue]) -> Bool {
        let value = self.value(in: claims)
        switch self.test {
        case .exists(let expected):
            return (value != nil) == expected
        case .anyOf(let accepted):
            guard let value else { return false }
            if case .array(let elements) = value {
                return elements.contains { element in ClaimScalar(element).map { accepted.contains($0) } ?? false }
            }
            return ClaimScalar(value).map { accepted.contains($0) } ?? false
        }
    }

    /// Splits a claim path: segments separated by `.`; a segment in square brackets is taken literally
    /// (`[https://example.com/roles]`, `[a.b].c`). nil when malformed (empty segment, unclosed bracket).
    public static func parsePath(_ text: String) -> [String]? {
        var segments: [String] = []
        var rest = Substring(text)
        while true {
            if rest.first == "[" {
                guard let close = rest.firstIndex(of: "]") else { return nil }
                let inner = rest[rest.index(after: rest.startIndex)..<close]
                guard !inner.isEmpty else { return nil }
                segments.append(String(inner))
                rest = rest[rest.index(after: close)...]
                if rest.isEmpty { return segments }
                guard rest.first == "." else { return nil }
                rest = rest.dropFirst()
                if rest.isEmpty { return nil }
            } else {
                let end = rest.firstIndex(of: ".") ?? rest.endIndex
                let segment = rest[..<end]
                guard !segment.isEmpty, !segment.contains("["), !segment.contains("]") else { return nil }
                segments.append(String(segment))
                if end == rest.endIndex { return segments }
                rest = rest[rest.index(after: end)...]
                if rest.isEmpty { return nil }
            }
        }
    }
}

/// One entry of `client_cert:`: a test on the verified client certificate.
public enum CertificateMatcher: Sendable, Hashable {
    /// Any URI SAN matches one of the patterns.
    case uriSANs([NamePattern])
    /// Any DNS SAN matches (case-insensitive; `*.example.com` in the policy covers one label).
    case dnsSANs([NamePattern])
    /// Any email SAN equals one of these (lower-cased).
    case emailSANs(Set<String>)
    /// The subject's common name equals one of these (exact).
    case subjectCN(Set<String>)
    /// The certificate's SPIFFE ID (its only URI SAN, scheme `spiffe`) matches one of the patterns.
    /// A certificate with more than one URI SAN has no SPIFFE ID (SPIFFE X.509-SVID 4.1).
    case spiffeIDs([NamePattern])

    /// The key as written under `client_cert:`.
    public var key: String {
        switch self {
        case .uriSANs: return "uri_sans"
        case .dnsSANs: return "dns_sans"
        case .emailSANs: return "email_sans"
        case .subjectCN: return "subject_cn"
        case .spiffeIDs: return "spiffe_ids"
        }
    }

    public func holds(_ certificate: ClientCertificateIdentity) -> Bool {
        switch self {
        case .uriSANs(let patterns):
            return certificate.uriSANs.contains { uri in patterns.contains { $0.matches(uri) } }
        case .dnsSANs(let patterns):
            return certificate.dnsSANs.contains { name in
                let lowered = PolicyText.lowercased(name)
                return patterns.contains { $0.matches(lowered) }
            }
        case .emailSANs(let emails):
            return certificate.emailSANs.contains { emails.contains(PolicyText.lowercased($0)) }
        case .subjectCN(let names):
            guard let name = certificate.commonName else { return false }
            return names.contains(name)
        case .spiffeIDs(let patterns):
            guard certificate.uriSANs.count == 1, let id = certificate.uriSANs.first,
                PolicyText.hasPrefixIgnoringCase(id, "spiffe://")
            else { return false }
            return patterns.contains { $0.matches(id) }
        }
    }
}

/// A name in a `client_cert` condition: exact, a prefix (`spiffe://example.com/ns/jobs/*`: below that
/// path), or a DNS wildcard (`*.workers.example.com`: exactly one more label).
public enum NamePattern: Sendable, Hashable, CustomStringConvertible {
    case exact(String)
    /// Stored with its trailing `/` (`spiffe://example.com/ns/jobs/`).
    case pathPrefix(String)
    /// Stored as the suffix with its leading dot (`.workers.example.com`).
    case dnsWildcard(suffix: String)

    public func matches(_ name: String) -> Bool {
        switch self {
        case .exact(let expected): return name == expected
        case .pathPrefix(let prefix): return name.utf8.count > prefix.utf8.count && name.hasPrefix(prefix)
        case .dnsWildcard(let suffix):
            guard name.utf8.count > suffix.utf8.count, name.hasSuffix(suffix) else { return false }
            return !name.utf8.dropLast(suffix.utf8.count).contains(UInt8(ascii: "."))
        }
    }

    /// Whether every name this pattern matches is also matched by `other` (for shadowing analysis).
    public func isCovered(by other: NamePattern) -> Bool {
        switch (self, other) {
        case (.exact(let a), _): return other.matches(a)
        case (.pathPrefix(let a), .pathPrefix(let b)): return a.hasPrefix(b)
        case (.dnsWildcard(let a), .dnsWildcard(let b)): return a == b
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .exact(let s): return s
        case .pathPrefix(let p): return p + "*"
        case .dnsWildcard(let suffix): return "*" + suffix
        }
    }
}

/// A day of the week, numbered as in C's `tm_wday` (Sunday 0).
public enum Weekday: Int, Sendable, Hashable, CaseIterable, Comparable {
    case sunday = 0, monday, tuesday, wednesday, thursday, friday, saturday

    /// `mon`, `monday`, `Mon` ... (nil when not a day).
    public init?(name: String) {
        switch name.lowercased() {
        case "sun", "sunday": self = .sunday
        case "mon", "monday": self = .monday
        case "tue", "tues", "tuesday": self = .tuesday
        case "wed", "wednesday": self = .wednesday
        case "thu", "thur", "thurs", "thursday": self = .thursday
        case "fri", "friday": self = .friday
        case "sat", "saturday": self = .saturday
        default: return nil
        }
    }

    public var shortName: String { ["sun", "mon", "tue", "wed", "thu", "fri", "sat"][self.rawValue] }

    public static func < (lhs: Weekday, rhs: Weekday) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A time zone compiled into its UTC offsets: the offset in force from each transition on.
/// Built by the config loader from the system's time zone database; evaluation is a binary search.
public struct UTCOffsetTable: Sendable, Hashable {
    /// The zone's name as written (`Europe/Berlin`, `UTC`).
    public var name: String
    /// Offset (seconds east of UTC) before the first transition.
    public var initialOffset: Int32
    /// Transition instants (Unix seconds, ascending) and the offset from each on.
    public var transitions: [Int64]
    public var offsets: [Int32]

    public init(name: String, initialOffset: Int32, transitions: [Int64] = [], offsets: [Int32] = []) {
        precondition(transitions.count == offsets.count)
        self.name = name
        self.initialOffset = initialOffset
        self.transitions = transitions
        self.offsets = offsets
    }

    public static let utc = UTCOffsetTable(name: "UTC", initialOffset: 0)

    public func offset(at time: Int64) -> Int32 {
        // Last transition <= time.
        var low = 0
        var high = self.transitions.count
        while low < high {
            let mid = (low + high) / 2
            if self.transitions[mid] <= time { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? self.initialOffset : self.offsets[low - 1]
    }
}

/// `time:` a window of local time: on one of `days` (all days when nil) and inside one of `hours`
/// (all day when empty), in a time zone. A range that ends before it starts wraps past midnight
/// (`22:00-06:00`); the day is always the day of the local time being tested.
public struct TimeWindow: Sendable, Hashable {
    /// Minutes of the day, `start` inclusive, `end` exclusive; `end` 1440 is midnight.
    public struct MinuteRange: Sendable, Hashable, CustomStringConvertible {
        public var start: Int
        public var end: Int
        public init(start: Int, end: Int) {
            self.start = start
            self.end = end
        }

        public func contains(_ minute: Int) -> Bool {
            self.start < self.end ? (minute >= self.start && minute < self.end) : (minute >= self.start || minute < self.end)
        }

        public var description: String {
            func hhmm(_ m: Int) -> String {
                let h = m / 60
                let mm = m % 60
                return (h < 10 ? "0" : "") + String(h) + ":" + (mm < 10 ? "0" : "") + String(mm)
            }
            return hhmm(self.start) + "-" + hhmm(self.end)
        }
    }

    public var days: Set<Weekday>?
    public var hours: [MinuteRange]
    public var zone: UTCOffsetTable

    public init(days: Set<Weekday>?, hours: [MinuteRange], zone: UTCOffsetTable) {
        self.days = days
        self.hours = hours
        self.zone = zone
    }

    /// Local weekday and minute of the day at `time` (Unix seconds).
    public func local(at time: Int64) -> (day: Weekday, minute: Int) {
        let local = time + Int64(self.zone.offset(at: time))
        let days = local >= 0 ? local / 86_400 : (local - 86_399) / 86_400
        let secondOfDay = local - days * 86_400
        // 1970-01-01 was a Thursday (4).
        let weekday = Int(((days % 7) + 7 + 4) % 7)
        return (Weekday(rawValue: weekday)!, Int(secondOfDay / 60))
    }

    public func holds(at time: Int64) -> Bool {
        let (day, minute) = self.local(at: time)
        if let days = self.days, !days.contains(day) { return false }
        if self.hours.isEmpty { return true }
        return self.hours.contains { $0.contains(minute) }
    }

    public var summary: String {
        var parts: [String] = []
        if let days = self.days { parts.append("days " + days.sorted().map(\.shortName).joined(separator: ",")) }
        if !self.hours.isEmpty { parts.append("hours " + self.hours.map(\.description).joined(separator: ",")) }
        parts.append(self.zone.name)
        return parts.joined(separator: " ")
    }
}

/// A named condition set from `definitions:`, as referenced by `use:`.
public struct DefinitionReference: Sendable, Hashable {
    public var name: String
    /// All must hold (a definition may itself `use` others; those arrive here as `.anyOf`).
    public var conditions: [Condition]
    public init(name: String, conditions: [Condition]) {
        self.name = name
        self.conditions = conditions
    }
}

enum PolicyText {
    /// Lower-cased; without a copy when there is nothing to lower.
    static func lowercased(_ text: String) -> String {
        for byte in text.utf8 where byte >= 0x80 || (byte >= 0x41 && byte <= 0x5A) {
            return text.lowercased()
        }
        return text
    }

    static func hasPrefixIgnoringCase(_ text: String, _ prefix: String) -> Bool {
        var iterator = text.utf8.makeIterator()
        for expected in prefix.utf8 {
            guard let byte = iterator.next() else { return false }
            let lowered = (byte >= 0x41 && byte <= 0x5A) ? byte | 0x20 : byte
            if lowered != expected { return false }
        }
        return true
    }
}
