import Foundation
import PolicyCore
import ProxyModel
import Yams

// The schema of the policy file: a walk over the node tree that
// builds the typed config and reports every problem with its key path and location.

/// What routes need to know about a listener, even one with errors of its own (so that a route
/// naming it gets no second, misleading "does not exist").
struct ListenerInfo {
    var name: String
    var protocolKind: ListenerProtocol?
    var hasClientCA: Bool
}

/// What the rest of the file needs to know about an issuer.
struct IssuerInfo {
    var name: String
    var audiences: [String]?
    /// The issuer URL (`iss`), nil when invalid.
    var url: String?
}

final class PolicyParser {
    let reader: NodeReader
    let baseDirectory: String
    let currentDirectory: String
    let options: ConfigLoadOptions

    // `definitions:` (see PolicyParser+Conditions.swift).
    var definitionNodes: [String: (key: Node, value: Node)] = [:]
    var definitionOrder: [String] = []
    var resolvedDefinitions: [String: [Condition]?] = [:]
    var resolvingDefinitions: [String] = []
    var usedDefinitions: Set<String> = []
    var definitionsUnreadable = false
    /// Time zones compiled so far, by name.
    var zoneCache: [String: UTCOffsetTable] = [:]

    static let topLevelKeys = ["version", "server", "listeners", "issuers", "routes", "audit", "definitions"]
    static let serverKeys = ["instance_id", "shutdown_grace_period", "reload_poll_interval"]
    static let listenerKeys = ["name", "address", "protocol", "tls", "proxy_protocol", "trusted_proxies", "limits"]
    static let tlsKeys = ["certificates", "client_ca", "client_auth", "crl"]
    static let certificateKeys = ["certificate", "private_key"]
    static let limitsKeys = [
        "max_connections", "max_header_bytes", "max_header_count", "header_read_timeout", "idle_timeout",
        "max_requests_per_connection",
    ]
    static let issuerKeys = [
        "name", "issuer", "audiences", "jwks_uri", "jwks_file", "algorithms", "clock_skew", "groups_claim",
        "email_claim", "typ", "token_cache", "unknown_kid_interval", "max_token_size",
    ]
    static let routeKeys = [
        "name", "listener", "match", "upstream", "public", "auth", "identity_headers", "rules", "preserve_host",
        "prefix_rewrite", "timeouts", "max_request_body", "forward_token", "explain_denials", "audit_query",
    ]
    static let matchKeys = ["host", "path"]
    static let upstreamKeys = ["endpoints", "max_connections", "max_pending", "idle_timeout"]
    static let authKeys = ["issuers", "audiences", "client_cert", "token_header", "token_cookie"]
    static let timeoutKeys = ["connect", "response", "idle"]
    static let ruleKeys = ["allow", "deny"]
    static let conditionKeys = [
        "authenticated", "methods", "paths", "source_cidrs", "groups", "emails", "email_domains", "subjects", "issuers",
        "claims", "client_cert", "time", "use",
    ]
    static let identityConditionKeys: Set<String> = [
        "groups", "emails", "email_domains", "subjects", "issuers", "claims", "client_cert",
    ]
    static let templateVariables = ["email", "subject", "issuer", "groups"]
    /// Headers that frame, route or belong to one hop: an identity header may never set them.
    static let forbiddenIdentityHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te", "trailer",
        "proxy-connection", "proxy-authenticate", "proxy-authorization", "expect",
    ]
    static let maximumClockSkew: Duration = .seconds(300)

    init(reader: NodeReader, baseDirectory: String, currentDirectory: String, options: ConfigLoadOptions) {
        self.reader = reader
        self.baseDirectory = baseDirectory
        self.currentDirectory = currentDirectory
        self.options = options
    }

    // MARK: - Document

    func parse(_ root: Node) -> PortcullisConfig? {
        let reader = self.reader
        guard let top = reader.fields(root, path: "policy file", place: "at the top level", allowed: Self.topLevelKeys)
        else { return nil }

        var version: Int?
        if let entry = reader.required(top, "version", context: "policy file") {
            if let value = reader.int(entry.value, path: "version") {
                if value == 1 {
                    version = value
                } else {
                    reader.error("version: unsupported version \(value) (this build reads version 1)", at: entry.value)
                }
            }
        }

        var server = ServerSettings()
        if let entry = top["server"] { server = self.parseServer(entry.value) ?? server }

        var listeners: [ListenerConfig] = []
        var listenerInfos: [String: ListenerInfo]? = [:]
        if let entry = reader.required(top, "listeners", context: "policy file") {
            (listeners, listenerInfos) = self.parseListeners(entry.value)
        }

        var issuers: [IssuerConfig] = []
        var issuerInfos: [String: IssuerInfo]? = [:]
        if let entry = top["issuers"] {
            (issuers, issuerInfos) = self.parseIssuers(entry.value)
        }

        if let entry = top["definitions"] { self.collectDefinitions(entry.value) }

        var routes: [RouteConfig] = []
        if let entry = top["routes"] {
            routes = self.parseRoutes(entry.value, listeners: listenerInfos, issuers: issuerInfos)
        }
        self.finishDefinitions(issuers: issuerInfos)

        var audit = AuditConfig.default
        if let entry = top["audit"] {
            audit = self.parseAudit(entry.value) ?? audit
        }

        guard let version, !reader.hasErrors else { return nil }
        return PortcullisConfig(
            version: version,
            server: server,
            listeners: listeners,
            issuers: issuers,
            routes: routes,
            audit: audit
        )
    }

    // MARK: - server

    func parseServer(_ node: Node) -> ServerSettings? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: "server", place: "in server", allowed: Self.serverKeys) else {
            return nil
        }
        var settings = ServerSettings()
        if let entry = fields["instance_id"] {
            settings.instanceID = reader.nonEmptyString(entry.value, path: "server.instance_id")
        }
        if let entry = fields["shutdown_grace_period"],
            let value = reader.duration(entry.value, path: "server.shutdown_grace_period")
        {
            settings.shutdownGracePeriod = value
        }
        if let entry = fields["reload_poll_interval"],
            let value = reader.duration(entry.value, path: "server.reload_poll_interval")
        {
            settings.reloadPollInterval = value
        }
        return settings
    }

    // MARK: - Shared pieces

    /// The required `name:` of a list item: valid and unique in its list.
    func name(_ fields: Fields, path: String, label: String, kind: String, seen: inout [String: Node]) -> String? {
        let reader = self.reader
        guard let entry = reader.required(fields, "name", context: label),
            let text = reader.string(entry.value, path: "\(path).name")
        else { return nil }
        guard ValueSyntax.isValidName(text) else {
            reader.error(
                "\(path).name: invalid name '\(text)' (letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64)",
                at: entry.value
            )
            return nil
        }
        if let first = seen[text] {
            let at = reader.location(first)
            reader.error(
                "duplicate \(kind) name '\(text)' (first at line \(at.line), column \(at.column))",
                at: entry.value
            )
            return nil
        }
        seen[text] = entry.value
        return text
    }

    /// A list of non-empty strings (an empty list is an error with `emptyReason`).
    func nonEmptyStrings(_ node: Node, path: String, emptyReason: String) -> [String]? {
        guard let values = self.reader.strings(node, path: path, allowSingle: false, emptyReason: emptyReason) else {
            return nil
        }
        var failed = false
        for (offset, (text, valueNode)) in values.enumerated() where text.isEmpty {
            self.reader.error("\(path)[\(offset)]: must not be empty", at: valueNode)
            failed = true
        }
        return failed ? nil : values.map(\.0)
    }

    /// A file path: made absolute against the policy file's folder; with `checkFiles`, it must be a readable file.
    func file(_ node: Node, path: String) -> String? {
        guard let text = self.reader.nonEmptyString(node, path: path) else { return nil }
        let absolute = ValueSyntax.absolutePath(text, base: self.baseDirectory, currentDirectory: self.currentDirectory)
        guard self.options.checkFiles else { return absolute }
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: absolute, isDirectory: &isDirectory) {
            self.reader.error("\(path): file not found: \(absolute)", at: node)
            return nil
        }
        if isDirectory.boolValue {
            self.reader.error("\(path): is a directory, not a file: \(absolute)", at: node)
            return nil
        }
        if !FileManager.default.isReadableFile(atPath: absolute) {
            self.reader.error("\(path): file is not readable: \(absolute)", at: node)
            return nil
        }
        return absolute
    }
}
