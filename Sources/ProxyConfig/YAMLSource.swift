import ProxyModel
import Yams

// From policy text to a Yams node tree, turning what YAML itself gets wrong for us into diagnostics:
//
// - `host: *.example.com` is an alias in YAML, not a string. A scan of the raw text finds unquoted
//   `*` values first, reports them at the `*`, and replaces the `*` with a private-use placeholder
//   of the same width, so the rest of the file still composes and is still checked. Reading a
//   scalar maps the placeholder back to `*`.
// - `Yams.compose` throws on the first duplicate key and points at the *first* occurrence. We rename
//   that first occurrence in the text to a unique placeholder of the same width and compose again,
//   until the tree composes; the walker maps placeholders back to their key and reports every
//   duplicate at its second (and later) occurrence, like any other problem.
//
// Both substitutions keep every line and column where it was, so all marks stay true.

/// The composed tree plus what is needed to read its scalars back as written.
struct ComposedSource {
    var root: Node?
    /// Diagnostics found while composing (unquoted wildcards, YAML syntax errors).
    var diagnostics: [ConfigDiagnostic]
    /// Locations already reported (unquoted wildcards): later diagnostics there would repeat them.
    var reportedLocations: Set<SourceLocation>
    var starPlaceholderUsed: Bool
    /// Placeholder key -> the key as written.
    var renamedKeys: [String: String]

    /// A scalar's text as written in the file.
    func text(_ scalar: String) -> String {
        guard self.starPlaceholderUsed, scalar.unicodeScalars.contains(YAMLSource.starPlaceholder) else {
            return scalar
        }
        return String(
            String.UnicodeScalarView(scalar.unicodeScalars.map { $0 == YAMLSource.starPlaceholder ? "*" : $0 })
        )
    }

    /// A mapping key's text as written in the file.
    func key(_ scalar: String) -> String {
        self.renamedKeys[scalar] ?? self.text(scalar)
    }
}

enum YAMLSource {
    /// Stands for an unquoted `*` that would start an alias.
    static let starPlaceholder: Unicode.Scalar = "\u{E000}"
    /// Digits of renamed duplicate keys: U+E100 ..< U+E100 + keyPlaceholderBase.
    static let keyPlaceholderFirst: UInt32 = 0xE100
    static let keyPlaceholderBase: UInt32 = 0x1000
    /// Each round fixes one duplicate key; beyond this many the file is reported as it is.
    static let maximumDuplicateRounds = 256

    static let wildcardHint = "an unquoted * starts a YAML alias"

    static func compose(_ rawText: String, file: String) -> ComposedSource {
        // libyaml counts `\r\n` and a lone `\r` as one line break each; so do we.
        var text = rawText.replacing("\r\n", with: "\n").replacing("\r", with: "\n")
        // A byte order mark is not a column.
        if text.unicodeScalars.first == "\u{FEFF}" { text.unicodeScalars.removeFirst() }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { Array($0.unicodeScalars) }
        var result = ComposedSource(
            root: nil,
            diagnostics: [],
            reportedLocations: [],
            starPlaceholderUsed: false,
            renamedKeys: [:]
        )

        // 1. Unquoted wildcards.
        let canPatchStars = !text.unicodeScalars.contains(self.starPlaceholder)
        for finding in WildcardScanner.scan(lines) {
            let location = SourceLocation(file: file, line: finding.line + 1, column: finding.column + 1)
            result.diagnostics.append(
                ConfigDiagnostic(
                    .error,
                    "unquoted wildcard '\(finding.token)': quote it (\"\(finding.token)\"); \(self.wildcardHint)",
                    at: location
                )
            )
            result.reportedLocations.insert(location)
            if canPatchStars {
                lines[finding.line][finding.column] = self.starPlaceholder
                result.starPlaceholderUsed = true
            }
        }

        // 2. Compose, renaming first occurrences of duplicate keys until it goes through.
        var counter: UInt32 = 0
        for _ in 0..<self.maximumDuplicateRounds {
            let current = lines.map { String(String.UnicodeScalarView($0)) }.joined(separator: "\n")
            do {
                result.root = try Yams.compose(yaml: current)
                return result
            } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
                let key = duplicates.first ?? ""
                let line = context.mark.line - 1
                let column = context.mark.column - 1
                guard let width = self.keyWidth(key, in: lines, line: line, column: column),
                    let placeholder = self.nextKeyPlaceholder(width: width, counter: &counter, avoiding: current)
                else {
                    result.diagnostics.append(
                        ConfigDiagnostic(
                            .error,
                            "duplicate key '\(key)'",
                            at: self.location(file: file, line: context.mark.line, column: context.mark.column)
                        )
                    )
                    return result
                }
                lines[line].replaceSubrange(column..<(column + width), with: placeholder.unicodeScalars)
                result.renamedKeys[placeholder] = key
            } catch {
                if let diagnostic = self.diagnostic(for: error, file: file, reported: result.reportedLocations) {
                    result.diagnostics.append(diagnostic)
                }
                return result
            }
        }
        result.diagnostics.append(
            ConfigDiagnostic(.error, "too many duplicate keys", at: SourceLocation(file: file, line: 1, column: 1))
        )
        return result
    }

    static func location(file: String, line: Int, column: Int) -> SourceLocation {
        SourceLocation(file: file, line: max(line, 1), column: max(column, 1))
    }

    /// The width of the key token at (line, column) when it spells `key` plainly or in simple quotes.
    private static func keyWidth(_ key: String, in lines: [[Unicode.Scalar]], line: Int, column: Int) -> Int? {
        guard !key.isEmpty, lines.indices.contains(line), column >= 0 else { return nil }
        let text = lines[line]
        let keyScalars = Array(key.unicodeScalars)
        func matches(_ candidate: [Unicode.Scalar]) -> Bool {
            column + candidate.count <= text.count && Array(text[column..<(column + candidate.count)]) == candidate
        }
        if matches(keyScalars) { return keyScalars.count }
        for quote: Unicode.Scalar in ["\"", "'"] where !keyScalars.contains(quote) && !keyScalars.contains("\\") {
            let quoted = [quote] + keyScalars + [quote]
            if matches(quoted) { return quoted.count }
        }
        return nil
    }

    private static func nextKeyPlaceholder(width: Int, counter: inout UInt32, avoiding text: String) -> String? {
        while true {
            var value = counter
            counter += 1
            var digits: [Unicode.Scalar] = []
            for _ in 0..<width {
                digits.insert(Unicode.Scalar(self.keyPlaceholderFirst + value % self.keyPlaceholderBase)!, at: 0)
                value /= self.keyPlaceholderBase
            }
            guard value == 0 else { return nil }  // `counter` no longer fits in `width` digits
            let placeholder = String(String.UnicodeScalarView(digits))
            if !text.contains(placeholder) { return placeholder }
        }
    }

    /// A YAML error as a diagnostic at its mark; nil when it repeats an unquoted-wildcard report.
    static func diagnostic(for error: any Error, file: String, reported: Set<SourceLocation>) -> ConfigDiagnostic? {
        guard let yamlError = error as? YamlError else {
            return ConfigDiagnostic(.error, "YAML error: \(error)", at: SourceLocation(file: file, line: 1, column: 1))
        }
        func syntaxError(_ context: YamlError.Context?, _ problem: String, _ mark: Mark) -> ConfigDiagnostic? {
            let location = self.location(file: file, line: mark.line, column: mark.column)
            var message = "YAML syntax error: \(problem)"
            if let context, !context.text.isEmpty {
                message += " (\(context.text) at line \(context.mark.line), column \(context.mark.column))"
            }
            if problem.contains("alias") {
                if reported.contains(location) { return nil }
                message += "; \(self.wildcardHint): quote wildcards (\"*.example.com\")"
            }
            return ConfigDiagnostic(.error, message, at: location)
        }
        switch yamlError {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            return syntaxError(context, problem, mark)
        case .reader(let problem, let offset, _, let yaml):
            var line = 1
            var column = 1
            if let offset {
                for byte in yaml.utf8.prefix(offset) {
                    if byte == UInt8(ascii: "\n") {
                        line += 1
                        column = 1
                    } else if byte & 0xC0 != 0x80 {
                        column += 1
                    }
                }
            }
            return ConfigDiagnostic(
                .error,
                "YAML cannot be read: \(problem)",
                at: SourceLocation(file: file, line: line, column: column)
            )
        case .duplicatedKeysInMapping(let duplicates, let context):
            return ConfigDiagnostic(
                .error,
                "duplicate key '\(duplicates.first ?? "")'",
                at: self.location(file: file, line: context.mark.line, column: context.mark.column)
            )
        default:
            return ConfigDiagnostic(
                .error,
                "YAML error: \(yamlError)",
                at: SourceLocation(file: file, line: 1, column: 1)
            )
        }
    }
}

/// Finds unquoted `*` values (`host: *.example.com`, `- *.a.com`, `[*.a.com]`, `{ host: *.a.com }`)
/// in raw YAML text. Skips comments, quoted strings and block scalars. An alias naming an anchor
/// defined earlier in the file (`*defaults` after `&defaults`) is real YAML and is left alone.
enum WildcardScanner {
    struct Finding: Equatable {
        /// 0-based line and column (in Unicode scalars, as libyaml counts them).
        var line: Int
        var column: Int
        var token: String
    }

    private enum Quote {
        case none
        case single
        case double
    }

    static func scan(_ lines: [[Unicode.Scalar]]) -> [Finding] {
        var findings: [Finding] = []
        var anchors = Set<String>()
        var flowDepth = 0
        var quote = Quote.none
        // Inside a block scalar (`|` or `>`), lines indented deeper than this are its content.
        var blockScalarParentIndent: Int?

        for (lineNumber, line) in lines.enumerated() {
            let indent = line.prefix { $0 == " " }.count
            if let parentIndent = blockScalarParentIndent {
                if line.allSatisfy({ $0 == " " || $0 == "\t" }) || indent > parentIndent { continue }
                blockScalarParentIndent = nil
            }
            var expectValue = quote == .none
            var tokenStart = indent
            var ownerColumn = indent
            var index = 0
            scanning: while index < line.count {
                let scalar = line[index]
                switch quote {
                case .double:
                    if scalar == "\\" {
                        index += 2
                        continue
                    }
                    if scalar == "\"" { quote = .none }
                    index += 1
                    continue
                case .single:
                    if scalar == "'" {
                        if index + 1 < line.count, line[index + 1] == "'" {
                            index += 2
                            continue
                        }
                        quote = .none
                    }
                    index += 1
                    continue
                case .none:
                    break
                }
                if scalar == " " || scalar == "\t" {
                    index += 1
                    continue
                }
                if scalar == "#", index == 0 || line[index - 1] == " " || line[index - 1] == "\t" { break scanning }
                let nextIsSpace = index + 1 == line.count || line[index + 1] == " " || line[index + 1] == "\t"
                if expectValue {
                    switch scalar {
                    case "\"", "'":
                        quote = scalar == "\"" ? .double : .single
                        tokenStart = index
                        expectValue = false
                        index += 1
                        continue
                    case "*":
                        let end = self.tokenEnd(line, from: index + 1, inFlow: flowDepth > 0)
                        let name = String(String.UnicodeScalarView(line[(index + 1)..<end]))
                        if name.isEmpty || name.hasPrefix(".") || !anchors.contains(name) {
                            findings.append(
                                Finding(line: lineNumber, column: index, token: "*" + name)
                            )
                        }
                        tokenStart = index
                        expectValue = false
                        index = end
                        continue
                    case "&", "!":
                        // Node properties come before the node: still expecting a value after them.
                        let end = self.tokenEnd(line, from: index + 1, inFlow: flowDepth > 0)
                        if scalar == "&" { anchors.insert(String(String.UnicodeScalarView(line[(index + 1)..<end]))) }
                        index = end
                        continue
                    case "[", "{":
                        flowDepth += 1
                        index += 1
                        continue
                    case "-", "?", ":":
                        if nextIsSpace {
                            if scalar == "-" { ownerColumn = index }
                            index += 1
                            continue
                        }
                    case "|", ">":
                        if flowDepth == 0 {
                            blockScalarParentIndent = ownerColumn
                            break scanning
                        }
                    default:
                        break
                    }
                }
                if flowDepth > 0 {
                    if scalar == "," {
                        expectValue = true
                        index += 1
                        continue
                    }
                    if scalar == "]" || scalar == "}" {
                        flowDepth -= 1
                        expectValue = false
                        index += 1
                        continue
                    }
                }
                if scalar == ":",
                    nextIsSpace
                        || (flowDepth > 0 && index + 1 < line.count && ",]}".unicodeScalars.contains(line[index + 1]))
                {
                    ownerColumn = tokenStart
                    expectValue = true
                    index += 1
                    continue
                }
                if expectValue {
                    tokenStart = index
                    expectValue = false
                }
                index += 1
            }
        }
        return findings
    }

    /// End of an alias, anchor or tag name: whitespace, or a flow indicator inside a flow collection.
    private static func tokenEnd(_ line: [Unicode.Scalar], from start: Int, inFlow: Bool) -> Int {
        var end = start
        while end < line.count {
            let scalar = line[end]
            if scalar == " " || scalar == "\t" { break }
            if inFlow && ",[]{}".unicodeScalars.contains(scalar) { break }
            end += 1
        }
        return end
    }
}
