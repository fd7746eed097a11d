import ProxyModel
import Yams

// Typed reading of a Yams node tree. Every read that fails records a diagnostic at the node and
// returns nil; the caller carries on, so one pass reports every problem in the file.

/// The keys of one YAML mapping, as written, after unknown and duplicate keys were reported.
struct Fields {
    struct Entry {
        var key: Node
        var value: Node
    }

    /// The mapping itself (for "missing key" diagnostics).
    var node: Node
    /// Known keys, first occurrence only.
    var entries: [String: Entry]
    /// Known keys in file order.
    var order: [String]

    subscript(_ key: String) -> Entry? { self.entries[key] }
    func has(_ key: String) -> Bool { self.entries[key] != nil }
}

/// The kind of a node as a user would call it.
enum NodeKind: Equatable {
    case mapping
    case list
    case null
    case boolean
    case integer
    case number
    case string

    var phrase: String {
        switch self {
        case .mapping: return "a mapping"
        case .list: return "a list"
        case .null: return "null"
        case .boolean: return "a boolean"
        case .integer: return "an integer"
        case .number: return "a number"
        case .string: return "a string"
        }
    }
}

final class NodeReader {
    let file: String
    let source: ComposedSource
    private(set) var diagnostics: [ConfigDiagnostic] = []

    init(file: String, source: ComposedSource) {
        self.file = file
        self.source = source
    }

    var hasErrors: Bool { self.diagnostics.contains { $0.severity == .error } }

    // MARK: - Diagnostics

    func location(_ node: Node) -> SourceLocation {
        guard let mark = node.mark else { return SourceLocation(file: self.file, line: 1, column: 1) }
        return YAMLSource.location(file: self.file, line: mark.line, column: mark.column)
    }

    func error(_ message: String, at node: Node) {
        self.report(ConfigDiagnostic(.error, message, at: self.location(node)))
    }

    func warning(_ message: String, at node: Node) {
        self.report(ConfigDiagnostic(.warning, message, at: self.location(node)))
    }

    func report(_ diagnostic: ConfigDiagnostic) {
        // An unquoted wildcard was reported at this spot already; anything else said there repeats it.
        if self.source.reportedLocations.contains(diagnostic.location) { return }
        self.diagnostics.append(diagnostic)
    }

    // MARK: - Kinds

    func kind(_ node: Node) -> NodeKind {
        switch node {
        case .mapping: return .mapping
        case .sequence: return .list
        case .alias: return .null
        case .scalar(let scalar):
            // Quoted scalars carry `!!str`; an explicit tag (`!!str 8080`) is taken at its word.
            switch scalar.tag.rawValue {
            case Tag.Name.str.rawValue: return .string
            case Tag.Name.null.rawValue: return .null
            case Tag.Name.bool.rawValue: return .boolean
            case Tag.Name.int.rawValue: return .integer
            case Tag.Name.float.rawValue: return .number
            default: break
            }
            guard scalar.style == .plain || scalar.style == .any else { return .string }
            let text = scalar.string
            if ["", "~", "null", "Null", "NULL"].contains(text) { return .null }
            if Self.booleans[text] != nil || Self.yaml11Booleans.contains(text) { return .boolean }
            if Self.integerValue(text) != nil { return .integer }
            if Self.looksNumeric(text) { return .number }
            return .string
        }
    }

    static let booleans: [String: Bool] = [
        "true": true, "True": true, "TRUE": true, "false": false, "False": false, "FALSE": false,
    ]
    /// YAML 1.1 spellings that Yams reads as booleans; refused so that `on`/`no` never flip a setting by accident.
    static let yaml11Booleans: Set<String> = [
        "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF",
    ]

    /// Decimal (leading zeros are decimal, as in YAML 1.2), `0x`, `0o` and `0b` integers, `_` allowed.
    static func integerValue(_ text: String) -> Int? {
        var digits = Substring(text.replacing("_", with: ""))
        var negative = false
        if digits.hasPrefix("-") || digits.hasPrefix("+") {
            negative = digits.hasPrefix("-")
            digits = digits.dropFirst()
        }
        var radix = 10
        for (prefix, base) in [("0x", 16), ("0o", 8), ("0b", 2)] where digits.hasPrefix(prefix) {
            radix = base
            digits = digits.dropFirst(2)
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isHexDigit }), let value = Int(digits, radix: radix)
        else { return nil }
        return negative ? -value : value
    }

    private static func looksNumeric(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first else { return false }
        if [".inf", ".Inf", ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN"].contains(text) { return true }
        return (ValueSyntax.isDigit(first) || first == "-" || first == "+" || first == ".") && Double(text) != nil
    }

    // MARK: - Mappings and lists

    /// The mapping's known keys. Reports a non-mapping, non-string keys, duplicate keys (at the second
    /// occurrence) and unknown keys (with the closest known key when it looks like a typo).
    /// `place` completes "unknown key 'x' ...": `at the top level`, `in route 'web'`, `in routes[0].match`.
    func fields(_ node: Node, path: String, place: String, allowed: [String]) -> Fields? {
        guard case .mapping(let mapping) = node else {
            self.error("\(path): expected a mapping, got \(self.kind(node).phrase)", at: node)
            return nil
        }
        var entries: [String: Fields.Entry] = [:]
        var order: [String] = []
        for (key, keyNode, value) in self.pairs(mapping, path: path, place: place) {
            guard allowed.contains(key) else {
                var message = "unknown key '\(key)' \(place)"
                if let suggestion = ValueSyntax.suggestion(for: key, among: allowed) {
                    message += " (did you mean '\(suggestion)'?)"
                }
                self.error(message, at: keyNode)
                continue
            }
            entries[key] = Fields.Entry(key: keyNode, value: value)
            order.append(key)
        }
        return Fields(node: node, entries: entries, order: order)
    }

    /// A mapping's entries with string keys, in file order; reports non-string and duplicate keys.
    func pairs(_ mapping: Node.Mapping, path: String, place: String) -> [(String, Node, Node)] {
        var result: [(String, Node, Node)] = []
        var seen: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                self.error("\(path): keys must be strings, got \(self.kind(keyNode).phrase)", at: keyNode)
                continue
            }
            let key = self.source.key(scalar.string)
            if let first = seen[key] {
                let at = self.location(first)
                self.error(
                    "duplicate key '\(key)' \(place) (first at line \(at.line), column \(at.column))",
                    at: keyNode
                )
                continue
            }
            seen[key] = keyNode
            result.append((key, keyNode, value))
        }
        return result
    }

    /// The value of a required key; reports its absence at the mapping.
    func required(_ fields: Fields, _ key: String, context: String) -> Fields.Entry? {
        if let entry = fields[key] { return entry }
        self.error("\(context): missing required key '\(key)'", at: fields.node)
        return nil
    }

    /// Whether `node` is a mapping with `key` (as written).
    func mappingHasKey(_ node: Node, _ key: String) -> Bool {
        guard case .mapping(let mapping) = node else { return false }
        return mapping.contains { pair in
            if case .scalar(let scalar) = pair.key { return self.source.key(scalar.string) == key }
            return false
        }
    }

    func list(_ node: Node, path: String) -> [Node]? {
        guard case .sequence(let sequence) = node else {
            self.error("\(path): expected a list, got \(self.kind(node).phrase)", at: node)
            return nil
        }
        return Array(sequence)
    }

    /// The name (`name:` value) of a list item, when it is a valid name; for naming it in messages
    /// before its keys are read.
    func peekName(_ node: Node) -> String? {
        guard case .mapping(let mapping) = node else { return nil }
        for (key, value) in mapping {
            if case .scalar(let keyScalar) = key, self.source.key(keyScalar.string) == "name",
                case .scalar(let valueScalar) = value
            {
                let name = self.source.text(valueScalar.string)
                return ValueSyntax.isValidName(name) ? name : nil
            }
        }
        return nil
    }

    // MARK: - Scalars

    /// A string (plain numbers are taken as their text; null and booleans are refused).
    func string(_ node: Node, path: String) -> String? {
        guard case .scalar(let scalar) = node else {
            self.error("\(path): expected a string, got \(self.kind(node).phrase)", at: node)
            return nil
        }
        switch self.kind(node) {
        case .null:
            self.error("\(path): expected a string, got null", at: node)
            return nil
        case .boolean:
            self.error("\(path): expected a string, got a boolean (quote it if you mean the text)", at: node)
            return nil
        default:
            return self.source.text(scalar.string)
        }
    }

    /// A non-empty string.
    func nonEmptyString(_ node: Node, path: String) -> String? {
        guard let text = self.string(node, path: path) else { return nil }
        guard !text.isEmpty else {
            self.error("\(path): must not be empty", at: node)
            return nil
        }
        return text
    }

    /// `true` or `false` only.
    func bool(_ node: Node, path: String) -> Bool? {
        guard case .scalar(let scalar) = node else {
            self.error("\(path): expected true or false, got \(self.kind(node).phrase)", at: node)
            return nil
        }
        let kind = self.kind(node)
        if kind == .boolean, let value = Self.booleans[scalar.string] { return value }
        if kind == .boolean {
            self.error("\(path): expected true or false, got '\(scalar.string)'", at: node)
        } else {
            self.error("\(path): expected true or false, got \(kind.phrase)", at: node)
        }
        return nil
    }

    func int(_ node: Node, path: String) -> Int? {
        guard case .scalar(let scalar) = node, self.kind(node) == .integer, let value = Self.integerValue(scalar.string)
        else {
            self.error("\(path): expected an integer, got \(self.kind(node).phrase)", at: node)
            return nil
        }
        return value
    }

    func int(_ node: Node, path: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = self.int(node, path: path) else { return nil }
        guard range.contains(value) else {
            if range.upperBound == Int.max {
                self.error("\(path): must be at least \(range.lowerBound), got \(value)", at: node)
            } else {
                self.error(
                    "\(path): must be between \(range.lowerBound) and \(range.upperBound), got \(value)",
                    at: node
                )
            }
            return nil
        }
        return value
    }

    /// A duration string, or an integer of seconds.
    func duration(_ node: Node, path: String) -> Duration? {
        guard case .scalar(let scalar) = node else {
            self.error("\(path): expected a duration (like 10s), got \(self.kind(node).phrase)", at: node)
            return nil
        }
        let kind = self.kind(node)
        if kind == .integer, let seconds = Self.integerValue(scalar.string) {
            guard seconds >= 0 else {
                self.error("\(path): a duration can not be negative", at: node)
                return nil
            }
            return .seconds(seconds)
        }
        guard kind == .string else {
            self.error("\(path): expected a duration (like 10s), got \(kind.phrase)", at: node)
            return nil
        }
        switch ValueSyntax.parseDuration(self.source.text(scalar.string)) {
        case .success(let duration): return duration
        case .failure(let failure):
            self.error("\(path): \(failure.message)", at: node)
            return nil
        }
    }

    /// A duration that must be above zero and at most `maximum`.
    func duration(_ node: Node, path: String, positive: Bool, maximum: Duration? = nil) -> Duration? {
        guard let value = self.duration(node, path: path) else { return nil }
        if positive && value <= .zero {
            self.error("\(path): must be greater than zero", at: node)
            return nil
        }
        if let maximum, value > maximum {
            self.error("\(path): must be at most \(Self.describe(maximum)), got \(Self.describe(value))", at: node)
            return nil
        }
        return value
    }

    /// Bytes: an integer, or a string with a unit.
    func size(_ node: Node, path: String) -> Int64? {
        guard case .scalar(let scalar) = node else {
            self.error("\(path): expected a size (like 64KiB), got \(self.kind(node).phrase)", at: node)
            return nil
        }
        let kind = self.kind(node)
        if kind == .integer, let bytes = Self.integerValue(scalar.string) {
            guard bytes >= 0 else {
                self.error("\(path): a size can not be negative", at: node)
                return nil
            }
            return Int64(bytes)
        }
        guard kind == .string else {
            self.error("\(path): expected a size (like 64KiB), got \(kind.phrase)", at: node)
            return nil
        }
        switch ValueSyntax.parseSize(self.source.text(scalar.string)) {
        case .success(let bytes): return bytes
        case .failure(let failure):
            self.error("\(path): \(failure.message)", at: node)
            return nil
        }
    }

    /// A list of strings, with each item's node. With `allowSingle`, a lone string counts as a list of one.
    /// An empty list is reported (with `emptyReason`) when `emptyReason` is given.
    func strings(_ node: Node, path: String, allowSingle: Bool, emptyReason: String?) -> [(String, Node)]? {
        if allowSingle, case .scalar = node {
            guard let value = self.string(node, path: path) else { return nil }
            return [(value, node)]
        }
        guard case .sequence(let sequence) = node else {
            let expected = allowSingle ? "a string or a list of strings" : "a list of strings"
            self.error("\(path): expected \(expected), got \(self.kind(node).phrase)", at: node)
            return nil
        }
        if sequence.isEmpty, let emptyReason {
            self.error("\(path): empty list; \(emptyReason)", at: node)
            return nil
        }
        var values: [(String, Node)] = []
        var failed = false
        for (index, item) in sequence.enumerated() {
            if let value = self.string(item, path: "\(path)[\(index)]") {
                values.append((value, item))
            } else {
                failed = true
            }
        }
        return failed ? nil : values
    }

    /// `1h30m`-style text for messages.
    static func describe(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds == 0 { return "0s" }
        if milliseconds % 1000 != 0 { return "\(milliseconds)ms" }
        var seconds = milliseconds / 1000
        var text = ""
        if seconds >= 3600 {
            text += "\(seconds / 3600)h"
            seconds %= 3600
        }
        if seconds >= 60 {
            text += "\(seconds / 60)m"
            seconds %= 60
        }
        if seconds > 0 { text += "\(seconds)s" }
        return text
    }
}
