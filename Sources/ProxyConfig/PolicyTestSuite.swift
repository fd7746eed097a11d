import Foundation
public import ProxyModel
import Yams

/// A file of policy unit tests for `portcullis test`: requests with an identity and the decision
/// expected for each. Read with the same diagnostics as the policy file (file:line:column, unknown keys).
///
/// ```yaml
/// tests:
///   - name: viewers may read
///     request: { method: GET, url: https://airflow.example.com/home, client_ip: 10.0.0.7, time: "2026-11-23T10:00:00+01:00" }
///     identity: { issuer: corp, claims: { sub: alice, groups: [airflow-viewers] } }
///     expect: allow
/// ```
public struct PolicyTestSuite: Sendable {
    public var file: String
    public var cases: [PolicyTestCase]

    public static func load(path: String) -> Result<PolicyTestSuite, ConfigLoadError> {
        guard let data = FileManager.default.contents(atPath: path) else {
            return .failure(
                ConfigLoadError(diagnostics: [
                    ConfigDiagnostic(.error, "cannot read test file", at: SourceLocation(file: path, line: 1, column: 1))
                ])
            )
        }
        guard let text = String(data: data, encoding: .utf8) else {
            return .failure(
                ConfigLoadError(diagnostics: [
                    ConfigDiagnostic(.error, "test file is not valid UTF-8", at: SourceLocation(file: path, line: 1, column: 1))
                ])
            )
        }
        return Self.parse(yaml: text, file: path)
    }

    public static func parse(yaml: String, file: String) -> Result<PolicyTestSuite, ConfigLoadError> {
        let source = YAMLSource.compose(yaml, file: file)
        let reader = NodeReader(file: file, source: source)
        var cases: [PolicyTestCase] = []
        if let root = source.root {
            cases = PolicyTestParser(reader: reader).parse(root)
        } else if source.diagnostics.isEmpty {
            reader.report(
                ConfigDiagnostic(.error, "the test file is empty (it needs 'tests:')", at: SourceLocation(file: file, line: 1, column: 1))
            )
        }
        let errors = orderedDiagnostics(source.diagnostics + reader.diagnostics).filter { $0.severity == .error }
        if !errors.isEmpty { return .failure(ConfigLoadError(diagnostics: errors)) }
        return .success(PolicyTestSuite(file: file, cases: cases))
    }

    /// RFC 3339 date-time with `Z` or an offset; fractional seconds allowed (truncated). Unix seconds.
    public static func parseTimestamp(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970.rounded(.down)) }
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let date = formatter.date(from: text) { return Int64(date.timeIntervalSince1970.rounded(.down)) }
        return nil
    }
}

public struct PolicyTestCase: Sendable {
    public var name: String
    public var location: SourceLocation
    public var listener: String?
    public var method: String
    public var url: String
    public var clientAddress: IPAddress?
    /// Unix seconds; nil: when the test runs.
    public var time: Int64?
    /// The identity: nil without a token; the issuer by name (nil: from `iss`, or the route's only issuer).
    public var issuer: String?
    public var claims: [String: JSONValue]?
    public var clientCertificate: ClientCertificateIdentity?
    public var expect: PolicyExpectation
}

/// What a test expects. Every field that is set must match.
public struct PolicyExpectation: Sendable, Equatable, CustomStringConvertible {
    /// true: forwarded; false: refused (any status).
    public var allowed: Bool?
    public var status: Int?
    public var reason: String?
    public var route: String?
    public var rule: Int?

    public func check(_ result: SimulationResult) -> [String] {
        var problems: [String] = []
        if let allowed, allowed != result.allowed {
            problems.append("expected \(allowed ? "allow" : "a refusal"), got \(Self.describe(result))")
        }
        if let status, status != result.status {
            problems.append("expected status \(status), got \(Self.describe(result))")
        }
        if let reason, reason != (result.reason?.code ?? "") {
            problems.append("expected reason \(reason), got \(Self.describe(result))")
        }
        if let route, route != result.route?.name {
            problems.append("expected route '\(route)', got \(result.route.map { "'\($0.name)'" } ?? "no route")")
        }
        if let rule, rule != result.decidingRule {
            problems.append("expected rules[\(rule)] to decide, got \(result.decidingRule.map { "rules[\($0)]" } ?? "no deciding rule")")
        }
        return problems
    }

    static func describe(_ result: SimulationResult) -> String {
        let outcome = result.allowed ? "allow (200)" : "\(result.status) \(result.reason?.code ?? "")"
        return "\(outcome): \(result.message)"
    }

    public var description: String {
        var parts: [String] = []
        if let allowed { parts.append(allowed ? "allow" : "refused") }
        if let status { parts.append("status \(status)") }
        if let reason { parts.append("reason \(reason)") }
        if let route { parts.append("route \(route)") }
        if let rule { parts.append("rules[\(rule)]") }
        return parts.joined(separator: ", ")
    }
}

struct PolicyTestParser {
    let reader: NodeReader

    static let topKeys = ["tests"]
    static let caseKeys = ["name", "request", "identity", "expect"]
    static let requestKeys = ["method", "url", "listener", "client_ip", "time"]
    static let identityKeys = ["issuer", "claims", "client_cert"]
    static let certificateKeys = ["subject", "subject_cn", "uri_sans", "dns_sans", "email_sans"]
    static let expectKeys = ["decision", "status", "reason", "route", "rule"]
    /// `expect: deny` is a policy denial (403); `unauthenticated` a 401; `not_found` no route.
    static let expectWords: [String: PolicyExpectation] = [
        "allow": PolicyExpectation(allowed: true),
        "deny": PolicyExpectation(allowed: false, status: 403),
        "unauthenticated": PolicyExpectation(allowed: false, status: 401),
        "not_found": PolicyExpectation(allowed: false, status: 404),
    ]

    func parse(_ root: Node) -> [PolicyTestCase] {
        guard let top = reader.fields(root, path: "test file", place: "at the top level", allowed: Self.topKeys),
            let entry = reader.required(top, "tests", context: "test file"),
            let items = reader.list(entry.value, path: "tests")
        else { return [] }
        if items.isEmpty { reader.error("tests: empty list; a test file needs at least one test", at: entry.value) }
        var cases: [PolicyTestCase] = []
        var names: [String: Node] = [:]
        for (index, item) in items.enumerated() {
            if let testCase = self.parseCase(item, path: "tests[\(index)]", names: &names) { cases.append(testCase) }
        }
        return cases
    }

    private func parseCase(_ node: Node, path: String, names: inout [String: Node]) -> PolicyTestCase? {
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.caseKeys) else { return nil }
        let errorsBefore = reader.diagnostics.count { $0.severity == .error }
        var name: String?
        if let entry = reader.required(fields, "name", context: path), let text = reader.nonEmptyString(entry.value, path: "\(path).name") {
            if let first = names[text] {
                reader.error("\(path).name: duplicate test name '\(text)' (first at line \(reader.location(first).line))", at: entry.value)
            } else {
                names[text] = entry.value
                name = text
            }
        }
        var method = "GET"
        var url: String?
        var listener: String?
        var clientAddress: IPAddress?
        var time: Int64?
        if let entry = reader.required(fields, "request", context: path),
            let request = reader.fields(entry.value, path: "\(path).request", place: "in \(path).request", allowed: Self.requestKeys)
        {
            let requestPath = "\(path).request"
            if let value = request["method"], let text = reader.nonEmptyString(value.value, path: "\(requestPath).method") {
                if ValueSyntax.isToken(text) {
                    method = text.uppercased()
                } else {
                    reader.error("\(requestPath).method: '\(text)' is not a valid HTTP method", at: value.value)
                }
            }
            if let value = reader.required(request, "url", context: requestPath),
                let text = reader.nonEmptyString(value.value, path: "\(requestPath).url")
            {
                let lowered = text.lowercased()
                if lowered.hasPrefix("http://") || lowered.hasPrefix("https://") {
                    url = text
                } else {
                    reader.error("\(requestPath).url: expected an absolute http:// or https:// URL, got '\(text)'", at: value.value)
                }
            }
            if let value = request["listener"] { listener = reader.nonEmptyString(value.value, path: "\(requestPath).listener") }
            if let value = request["client_ip"], let text = reader.nonEmptyString(value.value, path: "\(requestPath).client_ip") {
                clientAddress = IPAddress.parse(text)
                if clientAddress == nil { reader.error("\(requestPath).client_ip: '\(text)' is not an IP address", at: value.value) }
            }
            if let value = request["time"], let text = reader.nonEmptyString(value.value, path: "\(requestPath).time") {
                time = PolicyTestSuite.parseTimestamp(text)
                if time == nil {
                    reader.error(
                        "\(requestPath).time: '\(text)' is not an RFC 3339 time with a zone (2026-11-23T10:00:00Z or 2026-11-23T10:00:00+01:00)",
                        at: value.value
                    )
                }
            }
        }
        var issuer: String?
        var claims: [String: JSONValue]?
        var certificate: ClientCertificateIdentity?
        if let entry = fields["identity"],
            let identity = reader.fields(entry.value, path: "\(path).identity", place: "in \(path).identity", allowed: Self.identityKeys)
        {
            let identityPath = "\(path).identity"
            if let value = identity["issuer"] { issuer = reader.nonEmptyString(value.value, path: "\(identityPath).issuer") }
            if let value = identity["claims"] {
                if case .mapping = value.value, case .object(let object)? = self.json(value.value, path: "\(identityPath).claims") {
                    claims = object
                } else if case .mapping = value.value {
                    // reported by json()
                } else {
                    reader.error("\(identityPath).claims: expected a mapping of claims, got \(reader.kind(value.value).phrase)", at: value.value)
                }
            }
            if issuer != nil && claims == nil {
                reader.error("\(identityPath): 'issuer' without 'claims' (give the token's claims)", at: identity["issuer"]!.key)
            }
            if let value = identity["client_cert"] { certificate = self.certificate(value.value, path: "\(identityPath).client_cert") }
        }
        var expect: PolicyExpectation?
        if let entry = reader.required(fields, "expect", context: path) {
            expect = self.expectation(entry.value, path: "\(path).expect")
        }
        let errorsAfter = reader.diagnostics.count { $0.severity == .error }
        guard errorsAfter == errorsBefore, let name, let url, let expect else { return nil }
        return PolicyTestCase(
            name: name,
            location: reader.location(node),
            listener: listener,
            method: method,
            url: url,
            clientAddress: clientAddress,
            time: time,
            issuer: issuer,
            claims: claims,
            clientCertificate: certificate,
            expect: expect
        )
    }

    private func certificate(_ node: Node, path: String) -> ClientCertificateIdentity? {
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.certificateKeys) else { return nil }
        func list(_ key: String) -> [String] {
            guard let entry = fields[key] else { return [] }
            return reader.strings(entry.value, path: "\(path).\(key)", allowSingle: true, emptyReason: nil)?.map(\.0) ?? []
        }
        let commonName = fields["subject_cn"].flatMap { reader.nonEmptyString($0.value, path: "\(path).subject_cn") }
        let subject = fields["subject"].flatMap { reader.nonEmptyString($0.value, path: "\(path).subject") }
            ?? commonName.map { "CN=\($0)" } ?? ""
        return ClientCertificateIdentity(
            subject: subject,
            commonName: commonName,
            uriSANs: list("uri_sans"),
            dnsSANs: list("dns_sans"),
            emailSANs: list("email_sans")
        )
    }

    private func expectation(_ node: Node, path: String) -> PolicyExpectation? {
        if case .scalar = node {
            guard let word = reader.string(node, path: path) else { return nil }
            if let expectation = Self.expectWords[word] { return expectation }
            var message = "\(path): '\(word)' is not an expectation (allow, deny, unauthenticated, not_found, or a mapping with decision, status, reason, route, rule)"
            if let suggestion = ValueSyntax.suggestion(for: word, among: Array(Self.expectWords.keys).sorted()) {
                message += " (did you mean '\(suggestion)'?)"
            }
            reader.error(message, at: node)
            return nil
        }
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.expectKeys) else { return nil }
        if fields.order.isEmpty {
            reader.error("\(path): empty mapping; say what is expected", at: node)
            return nil
        }
        var expectation = PolicyExpectation()
        if let entry = fields["decision"], let word = reader.string(entry.value, path: "\(path).decision") {
            switch word {
            case "allow": expectation.allowed = true
            case "deny": expectation.allowed = false
            default: reader.error("\(path).decision: expected allow or deny, got '\(word)'", at: entry.value)
            }
        }
        if let entry = fields["status"] { expectation.status = reader.int(entry.value, path: "\(path).status", in: 100...599) }
        if let entry = fields["reason"], let code = reader.nonEmptyString(entry.value, path: "\(path).reason") {
            if ReasonCode.all.contains(where: { $0.code == code }) {
                expectation.reason = code
            } else {
                var message = "\(path).reason: unknown reason code '\(code)'"
                if let suggestion = ValueSyntax.suggestion(for: code, among: ReasonCode.all.map(\.code)) {
                    message += " (did you mean '\(suggestion)'?)"
                }
                reader.error(message, at: entry.value)
            }
        }
        if let entry = fields["route"] { expectation.route = reader.nonEmptyString(entry.value, path: "\(path).route") }
        if let entry = fields["rule"] { expectation.rule = reader.int(entry.value, path: "\(path).rule", in: 0...100_000) }
        return expectation
    }

    /// A YAML value as JSON (claims): mappings, lists, strings, integers, numbers, booleans, null.
    func json(_ node: Node, path: String) -> JSONValue? {
        switch node {
        case .mapping(let mapping):
            var object: [String: JSONValue] = [:]
            var failed = false
            for (key, _, value) in reader.pairs(mapping, path: path, place: "in \(path)") {
                if let converted = self.json(value, path: "\(path).\(key)") { object[key] = converted } else { failed = true }
            }
            return failed ? nil : .object(object)
        case .sequence(let sequence):
            var array: [JSONValue] = []
            var failed = false
            for (index, item) in sequence.enumerated() {
                if let converted = self.json(item, path: "\(path)[\(index)]") { array.append(converted) } else { failed = true }
            }
            return failed ? nil : .array(array)
        case .alias:
            reader.error("\(path): YAML aliases are not supported here", at: node)
            return nil
        case .scalar(let scalar):
            switch reader.kind(node) {
            case .null: return .null
            case .boolean: return reader.bool(node, path: path).map { .bool($0) }
            case .integer:
                if let value = NodeReader.integerValue(scalar.string) { return .integer(Int64(value)) }
                reader.error("\(path): integer out of range", at: node)
                return nil
            case .number:
                if let value = Double(scalar.string), value.isFinite { return .number(value) }
                reader.error("\(path): expected a finite number", at: node)
                return nil
            default:
                return .string(reader.source.text(scalar.string))
            }
        }
    }
}
