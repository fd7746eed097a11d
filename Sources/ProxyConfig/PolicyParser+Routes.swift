import PolicyCore
import ProxyModel
import Yams

// `routes:`: match, upstream, auth and identity headers.
extension PolicyParser {
    // MARK: - routes

    struct RouteKey: Hashable {
        var listener: String
        var host: HostPattern
        var path: PathPattern
    }

    /// `listeners`/`issuers` nil: that section was unreadable, so references to it are not checked
    /// (they would only repeat its error).
    func parseRoutes(_ node: Node, listeners: [String: ListenerInfo]?, issuers: [String: IssuerInfo]?) -> [RouteConfig]
    {
        let reader = self.reader
        guard let items = reader.list(node, path: "routes") else { return [] }
        var routes: [RouteConfig] = []
        var names: [String: Node] = [:]
        var matches: [RouteKey: (name: String, node: Node)] = [:]
        for (index, item) in items.enumerated() {
            let path = "routes[\(index)]"
            let label = reader.peekName(item).map { "route '\($0)'" } ?? path
            guard let fields = reader.fields(item, path: path, place: "in \(label)", allowed: Self.routeKeys) else {
                continue
            }
            let errorsBefore = reader.diagnostics.filter { $0.severity == .error }.count
            let name = self.name(fields, path: path, label: label, kind: "route", seen: &names)

            // listener
            var listener: ListenerInfo?
            if let entry = reader.required(fields, "listener", context: label),
                let text = reader.nonEmptyString(entry.value, path: "\(path).listener")
            {
                if let info = listeners?[text] {
                    listener = info
                    if let kind = info.protocolKind, kind != .http, kind != .https {
                        reader.error(
                            "\(label): listener '\(text)' is \(kind == .admin ? "an" : "a") \(kind.rawValue) listener; routes need an http or https listener",
                            at: entry.value
                        )
                    }
                } else if let listeners {
                    var message = "\(label): listener '\(text)' does not exist"
                    if let suggestion = ValueSyntax.suggestion(for: text, among: Array(listeners.keys).sorted()) {
                        message += " (did you mean '\(suggestion)'?)"
                    }
                    reader.error(message, at: entry.value)
                }
            }

            // match
            var host: HostPattern? = .any
            var pathPattern: PathPattern? = .prefix("")
            var matchNode: Node?
            if let entry = reader.required(fields, "match", context: label) {
                matchNode = entry.value
                if let match = reader.fields(
                    entry.value,
                    path: "\(path).match",
                    place: "in \(path).match",
                    allowed: Self.matchKeys
                ) {
                    if let hostEntry = match["host"] {
                        host = nil
                        if let text = reader.string(hostEntry.value, path: "\(path).match.host") {
                            switch HostPattern.parse(text) {
                            case .success(let pattern): host = pattern
                            case .failure(let failure):
                                reader.error("\(path).match.host: \(failure.message)", at: hostEntry.value)
                            }
                        }
                    }
                    if let pathEntry = match["path"] {
                        pathPattern = nil
                        if let text = reader.string(pathEntry.value, path: "\(path).match.path") {
                            switch PathPattern.parse(text) {
                            case .success(let pattern): pathPattern = pattern
                            case .failure(let failure):
                                reader.error("\(path).match.path: \(failure.message)", at: pathEntry.value)
                            }
                        }
                    }
                } else {
                    host = nil
                    pathPattern = nil
                }
            }

            // upstream
            var upstream: UpstreamConfig?
            if let entry = reader.required(fields, "upstream", context: label) {
                upstream = self.parseUpstream(entry.value, path: "\(path).upstream")
            }

            // public / auth
            var isPublic = false
            var publicValid = true
            if let entry = fields["public"] {
                if let value = reader.bool(entry.value, path: "\(path).public") {
                    isPublic = value
                } else {
                    publicValid = false
                }
            }
            var auth: RouteAuthConfig?
            if let entry = fields["auth"] {
                auth = self.parseAuth(
                    entry.value,
                    path: "\(path).auth",
                    label: label,
                    listener: listener,
                    issuers: issuers
                )
                if isPublic, let publicEntry = fields["public"] {
                    reader.error(
                        "\(label) has both 'auth' and 'public: true'; a route either requires identity or is public",
                        at: publicEntry.key
                    )
                }
            } else if !isPublic && publicValid {
                reader.error(
                    "\(label) has neither 'auth' nor 'public: true' (routes are closed by default; say which)",
                    at: item
                )
            }

            // identity headers
            var identityHeaders: [IdentityHeader] = []
            if let entry = fields["identity_headers"] {
                if isPublic {
                    reader.error(
                        "\(label): identity headers on a public route (a public route has no identity to send)",
                        at: entry.key
                    )
                }
                identityHeaders = self.parseIdentityHeaders(entry.value, path: "\(path).identity_headers")
            }

            // rules
            var rules: [Rule] = []
            if let entry = fields["rules"] {
                let context = RuleContext(
                    routeLabel: label,
                    isPublic: isPublic,
                    authIssuers: auth?.issuers,
                    issuers: issuers
                )
                rules = self.parseRules(entry.value, path: "\(path).rules", context: context)
            }
            var explainDenials = false
            if let entry = fields["explain_denials"],
                let value = reader.bool(entry.value, path: "\(path).explain_denials")
            {
                explainDenials = value
            }
            var auditQuery: Set<String> = []
            if let entry = fields["audit_query"],
                let names = reader.strings(entry.value, path: "\(path).audit_query", allowSingle: true, emptyReason: nil)
            {
                auditQuery = Set(names.map(\.0))
            }
            if reader.diagnostics.filter({ $0.severity == .error }).count == errorsBefore {
                self.analyseRules(
                    rules,
                    label: label,
                    path: path,
                    isPublic: isPublic,
                    auth: auth,
                    rulesNode: fields["rules"]?.key,
                    routeNode: item
                )
            }

            var preserveHost = true
            if let entry = fields["preserve_host"], let value = reader.bool(entry.value, path: "\(path).preserve_host")
            {
                preserveHost = value
            }

            var prefixRewrite: String?
            if let entry = fields["prefix_rewrite"],
                let text = reader.string(entry.value, path: "\(path).prefix_rewrite")
            {
                let valuePath = "\(path).prefix_rewrite"
                if !text.hasPrefix("/") {
                    reader.error("\(valuePath): must start with '/', got '\(text)'", at: entry.value)
                } else if text.contains("*") || text.contains("?") || text.contains("#") {
                    reader.error(
                        "\(valuePath): must be a plain path (no '*', '?' or '#'), got '\(text)'",
                        at: entry.value
                    )
                } else if case .success(let normalized) = PathNormalizer.normalizePath(text), normalized == text {
                    prefixRewrite = text
                } else {
                    reader.error("\(valuePath): '\(text)' is not a normalized path", at: entry.value)
                }
                if case .exact(let exact)? = pathPattern {
                    reader.error(
                        "\(valuePath): only valid when match.path is a prefix pattern ('\(exact)/*'), not the exact path '\(exact)'",
                        at: entry.key
                    )
                }
            }

            var timeouts = RouteTimeouts()
            if let entry = fields["timeouts"],
                let timeoutFields = reader.fields(
                    entry.value,
                    path: "\(path).timeouts",
                    place: "in \(path).timeouts",
                    allowed: Self.timeoutKeys
                )
            {
                if let value = timeoutFields["connect"].flatMap({
                    reader.duration($0.value, path: "\(path).timeouts.connect", positive: true)
                }) {
                    timeouts.connect = value
                }
                if let value = timeoutFields["response"].flatMap({
                    reader.duration($0.value, path: "\(path).timeouts.response", positive: true)
                }) {
                    timeouts.response = value
                }
                if let value = timeoutFields["idle"].flatMap({
                    reader.duration($0.value, path: "\(path).timeouts.idle", positive: true)
                }) {
                    timeouts.idle = value
                }
            }

            var maxRequestBody = RouteConfig.defaultMaxRequestBodyBytes
            if let entry = fields["max_request_body"],
                let value = reader.size(entry.value, path: "\(path).max_request_body")
            {
                maxRequestBody = value
            }

            var forwardToken = false
            if let entry = fields["forward_token"], let value = reader.bool(entry.value, path: "\(path).forward_token")
            {
                forwardToken = value
            }

            // The same listener, host and path twice: the second route would never be chosen.
            if let name, let listenerName = listener?.name, let host, let pathPattern, let matchNode {
                let key = RouteKey(listener: listenerName, host: host, path: pathPattern)
                if let first = matches[key] {
                    reader.error(
                        "\(label) has the same listener, host and path as route '\(first.name)' (line \(reader.location(first.node).line)); it would never be used",
                        at: matchNode
                    )
                } else {
                    matches[key] = (name, matchNode)
                }
            }

            let errorsAfter = reader.diagnostics.filter { $0.severity == .error }.count
            if let name, let listener, let host, let pathPattern, let upstream, errorsAfter == errorsBefore {
                routes.append(
                    RouteConfig(
                        name: name,
                        listener: listener.name,
                        host: host,
                        path: pathPattern,
                        upstream: upstream,
                        isPublic: isPublic,
                        auth: auth,
                        identityHeaders: identityHeaders,
                        rules: rules,
                        preserveHost: preserveHost,
                        prefixRewrite: prefixRewrite,
                        timeouts: timeouts,
                        maxRequestBodyBytes: maxRequestBody,
                        forwardToken: forwardToken,
                        explainDenials: explainDenials,
                        auditQueryParameters: auditQuery,
                        location: reader.location(item)
                    )
                )
            }
        }
        return routes
    }

    // MARK: upstream

    func parseUpstream(_ node: Node, path: String) -> UpstreamConfig? {
        let reader = self.reader
        switch node {
        case .scalar:
            guard let text = reader.nonEmptyString(node, path: path) else { return nil }
            guard let (scheme, endpoints) = self.endpoints([(text, node)], path: { _ in path }) else { return nil }
            return UpstreamConfig(scheme: scheme, endpoints: endpoints)
        case .sequence:
            guard let (scheme, endpoints) = self.endpointList(node, path: path) else { return nil }
            return UpstreamConfig(scheme: scheme, endpoints: endpoints)
        case .mapping:
            guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.upstreamMappingKeys)
            else {
                return nil
            }
            var result: (UpstreamScheme, [HostPort])?
            if let entry = reader.required(fields, "endpoints", context: path) {
                result = self.endpointList(entry.value, path: "\(path).endpoints")
            }
            var maxConnections = 128
            var maxPending = 1_024
            var idleTimeout: Duration = .seconds(60)
            var failed = false
            if let entry = fields["max_connections"] {
                if let value = reader.int(entry.value, path: "\(path).max_connections", in: 1...Int.max) {
                    maxConnections = value
                } else {
                    failed = true
                }
            }
            if let entry = fields["max_pending"] {
                if let value = reader.int(entry.value, path: "\(path).max_pending", in: 0...Int.max) {
                    maxPending = value
                } else {
                    failed = true
                }
            }
            if let entry = fields["idle_timeout"] {
                if let value = reader.duration(entry.value, path: "\(path).idle_timeout", positive: true) {
                    idleTimeout = value
                } else {
                    failed = true
                }
            }
            var tls: UpstreamTLSConfig?
            if let entry = fields["tls"] {
                if let (scheme, _) = result, scheme != .https {
                    reader.error(
                        "\(path).tls: only valid with https endpoints (this upstream is \(scheme.rawValue))",
                        at: entry.key
                    )
                    failed = true
                }
                tls = self.parseUpstreamTLS(entry.value, path: "\(path).tls")
                failed = failed || tls == nil
            }
            guard let (scheme, endpoints) = result, !failed else { return nil }
            return UpstreamConfig(
                scheme: scheme,
                endpoints: endpoints,
                maxConnectionsPerEndpoint: maxConnections,
                maxPendingRequests: maxPending,
                idleTimeout: idleTimeout,
                tls: tls
            )
        case .alias:
            reader.error("\(path): expected a URL, a list of URLs or a mapping with 'endpoints'", at: node)
            return nil
        }
    }

    /// Keys of the upstream mapping form (`upstreamKeys` plus the TLS issue's `tls`).
    static let upstreamMappingKeys = upstreamKeys + ["tls"]
    static let upstreamTLSKeys = [
        "ca", "client_certificate", "client_key", "server_name", "min_version", "insecure_skip_verify",
    ]

    func parseUpstreamTLS(_ node: Node, path: String) -> UpstreamTLSConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.upstreamTLSKeys) else {
            return nil
        }
        var failed = false
        var tls = UpstreamTLSConfig()
        if let entry = fields["ca"] {
            tls.caFile = self.file(entry.value, path: "\(path).ca")
            failed = failed || tls.caFile == nil
        }
        if let entry = fields["client_certificate"] {
            tls.clientCertificate = self.file(entry.value, path: "\(path).client_certificate")
            failed = failed || tls.clientCertificate == nil
        }
        if let entry = fields["client_key"] {
            tls.clientKey = self.file(entry.value, path: "\(path).client_key")
            failed = failed || tls.clientKey == nil
        }
        if let certificate = fields["client_certificate"], fields["client_key"] == nil {
            reader.error("\(path): 'client_certificate' needs 'client_key' (give both or neither)", at: certificate.key)
            failed = true
        } else if let key = fields["client_key"], fields["client_certificate"] == nil {
            reader.error("\(path): 'client_key' needs 'client_certificate' (give both or neither)", at: key.key)
            failed = true
        }
        if let entry = fields["server_name"],
            let text = reader.nonEmptyString(entry.value, path: "\(path).server_name")
        {
            let name = text.lowercased()
            if IPAddress.parse(name) != nil || !ValueSyntax.isHostName(name) {
                reader.error(
                    "\(path).server_name: '\(text)' is not a DNS name (it is sent as SNI and verified in the upstream certificate)",
                    at: entry.value
                )
                failed = true
            } else {
                tls.serverName = name
            }
        } else if fields["server_name"] != nil {
            failed = true
        }
        if let entry = fields["min_version"] {
            if let value = self.tlsMinimumVersion(entry.value, path: "\(path).min_version") {
                tls.minVersion = value
            } else {
                failed = true
            }
        }
        if let entry = fields["insecure_skip_verify"] {
            if let value = reader.bool(entry.value, path: "\(path).insecure_skip_verify") {
                tls.insecureSkipVerify = value
                if value, let ca = fields["ca"] {
                    reader.error(
                        "\(path): 'ca' and 'insecure_skip_verify: true' contradict each other; remove one",
                        at: ca.key
                    )
                    failed = true
                } else if value {
                    reader.warning(
                        "\(path).insecure_skip_verify: the upstream's certificate is not verified; anyone on the network path can impersonate it (give 'ca' instead)",
                        at: entry.key
                    )
                }
            } else {
                failed = true
            }
        }
        return failed ? nil : tls
    }

    private func endpointList(_ node: Node, path: String) -> (UpstreamScheme, [HostPort])? {
        guard
            let values = self.reader.strings(
                node,
                path: path,
                allowSingle: false,
                emptyReason: "an upstream needs at least one endpoint URL"
            )
        else { return nil }
        return self.endpoints(values, path: { "\(path)[\($0)]" })
    }

    private func endpoints(_ values: [(String, Node)], path: (Int) -> String) -> (UpstreamScheme, [HostPort])? {
        var scheme: UpstreamScheme?
        var endpoints: [HostPort] = []
        var failed = false
        for (index, (text, node)) in values.enumerated() {
            switch ValueSyntax.parseUpstreamURL(text) {
            case .failure(let failure):
                self.reader.error("\(path(index)): \(failure.message)", at: node)
                failed = true
            case .success(let (endpointScheme, endpoint)):
                if let scheme, scheme != endpointScheme {
                    self.reader.error(
                        "\(path(index)): all endpoints of an upstream use one scheme ('\(endpointScheme.rawValue)' here, '\(scheme.rawValue)' before)",
                        at: node
                    )
                    failed = true
                }
                scheme = scheme ?? endpointScheme
                endpoints.append(endpoint)
            }
        }
        guard let scheme, !failed else { return nil }
        return (scheme, endpoints)
    }

    // MARK: auth

    func parseAuth(
        _ node: Node,
        path: String,
        label: String,
        listener: ListenerInfo?,
        issuers: [String: IssuerInfo]?
    ) -> RouteAuthConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.authKeys) else {
            return nil
        }
        var failed = false
        var issuerNames: [String] = []
        if let entry = fields["issuers"] {
            if let values = self.nonEmptyStrings(
                entry.value,
                path: "\(path).issuers",
                emptyReason: "name at least one issuer"
            ) {
                for (offset, text) in values.enumerated() {
                    guard let issuers, issuers[text] == nil else { continue }
                    let valueNode = Self.item(entry.value, offset)
                    reader.error(
                        "\(path).issuers[\(offset)]: \(self.unknownIssuer(text, issuers: issuers))",
                        at: valueNode
                    )
                    failed = true
                }
                issuerNames = values
            } else {
                failed = true
            }
        }
        var audiences: [String]?
        if let entry = fields["audiences"] {
            audiences = self.nonEmptyStrings(
                entry.value,
                path: "\(path).audiences",
                emptyReason: "name at least one audience or remove the key"
            )
            failed = failed || audiences == nil
            if !fields.has("issuers") {
                reader.error(
                    "\(path).audiences: only meaningful with 'issuers' (audiences are checked in tokens)",
                    at: entry.key
                )
            }
        }
        var clientCert: ClientCertRequirement?
        if let entry = fields["client_cert"], let text = reader.string(entry.value, path: "\(path).client_cert") {
            if let requirement = ClientCertRequirement(rawValue: text) {
                clientCert = requirement
                if let listener, listener.protocolKind == .https || listener.protocolKind == nil, !listener.hasClientCA
                {
                    reader.error(
                        "\(label): client_cert needs listener '\(listener.name)' to have 'tls.client_ca' (the CA that signs client certificates)",
                        at: entry.value
                    )
                } else if let listener, let kind = listener.protocolKind, kind != .https {
                    reader.error(
                        "\(label): client_cert needs an https listener with 'tls.client_ca'; listener '\(listener.name)' is \(kind.rawValue)",
                        at: entry.value
                    )
                }
            } else {
                reader.error("\(path).client_cert: expected 'required' or 'optional', got '\(text)'", at: entry.value)
                failed = true
            }
        }
        var tokenHeader: String?
        if let entry = fields["token_header"], let text = reader.nonEmptyString(entry.value, path: "\(path).token_header") {
            if ValueSyntax.isToken(text), text.lowercased() != "authorization" {
                tokenHeader = text
            } else {
                reader.error(
                    "\(path).token_header: '\(text)' is not a header name (Authorization: Bearer is always read)",
                    at: entry.value
                )
                failed = true
            }
        }
        var tokenCookie: String?
        if let entry = fields["token_cookie"], let text = reader.nonEmptyString(entry.value, path: "\(path).token_cookie") {
            if ValueSyntax.isToken(text) {
                tokenCookie = text
            } else {
                reader.error("\(path).token_cookie: '\(text)' is not a cookie name", at: entry.value)
                failed = true
            }
        }
        if (tokenHeader != nil || tokenCookie != nil) && !fields.has("issuers") {
            reader.error("\(path): token_header and token_cookie need 'issuers'", at: node)
            failed = true
        }
        if !fields.has("issuers") && !fields.has("client_cert") {
            reader.error(
                "\(path): names neither 'issuers' nor 'client_cert'; say how callers prove their identity",
                at: node
            )
            failed = true
        }
        // `aud` is always checked (DESIGN.md invariant 4): every issuer needs an audience for this route.
        if audiences == nil {
            for (offset, issuerName) in issuerNames.enumerated() {
                if let issuer = issuers?[issuerName], issuer.audiences == nil {
                    reader.error(
                        "\(path).issuers[\(offset)]: no audience to check for tokens from issuer '\(issuerName)'; set 'audiences' here or on the issuer",
                        at: Self.item(fields["issuers"]!.value, offset)
                    )
                    failed = true
                }
            }
        }
        guard !failed else { return nil }
        return RouteAuthConfig(
            issuers: issuerNames,
            audiences: audiences,
            clientCert: clientCert,
            tokenHeader: tokenHeader,
            tokenCookie: tokenCookie
        )
    }

    func unknownIssuer(_ name: String, issuers: [String: IssuerInfo]) -> String {
        var message = "unknown issuer '\(name)'"
        if issuers.isEmpty {
            message += " (the file declares no issuers)"
        } else if let suggestion = ValueSyntax.suggestion(for: name, among: Array(issuers.keys).sorted()) {
            message += " (did you mean '\(suggestion)'?)"
        }
        return message
    }

    /// The node of item `offset` of a list, or the node itself when it is a single scalar.
    static func item(_ node: Node, _ offset: Int) -> Node {
        if case .sequence(let sequence) = node, sequence.indices.contains(offset) { return sequence[offset] }
        return node
    }

    // MARK: identity headers

    func parseIdentityHeaders(_ node: Node, path: String) -> [IdentityHeader] {
        let reader = self.reader
        guard case .mapping(let mapping) = node else {
            reader.error(
                "\(path): expected a mapping of header names to templates, got \(reader.kind(node).phrase)",
                at: node
            )
            return []
        }
        var headers: [IdentityHeader] = []
        var seen: [String: Node] = [:]
        for (name, keyNode, value) in reader.pairs(mapping, path: path, place: "in \(path)") {
            guard ValueSyntax.isToken(name) else {
                reader.error("\(path): '\(name)' is not a valid HTTP header name", at: keyNode)
                continue
            }
            let lowered = name.lowercased()
            if Self.forbiddenIdentityHeaders.contains(lowered) {
                reader.error(
                    "\(path): '\(name)' can not be an identity header (it frames, routes or belongs to one hop)",
                    at: keyNode
                )
                continue
            }
            if let first = seen[lowered] {
                reader.error(
                    "\(path): header '\(name)' is set twice (header names ignore case; first at line \(reader.location(first).line))",
                    at: keyNode
                )
                continue
            }
            seen[lowered] = keyNode
            guard let template = reader.string(value, path: "\(path).\(name)") else { continue }
            if let problem = Self.templateProblem(template) {
                reader.error("\(path).\(name): \(problem)", at: value)
                continue
            }
            headers.append(IdentityHeader(name: name, template: template))
        }
        return headers
    }

    /// Why a template is not valid, or nil.
    static func templateProblem(_ template: String) -> String? {
        if template.isEmpty { return "empty template" }
        if template.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "template contains control characters"
        }
        let allowed = "${email}, ${subject}, ${issuer}, ${groups} or ${claims.NAME}"
        var rest = Substring(template)
        while let start = rest.firstRange(of: "${") {
            let afterOpen = rest[start.upperBound...]
            guard let close = afterOpen.firstIndex(of: "}") else {
                return "unterminated '${' in template '\(template)'"
            }
            let variable = afterOpen[..<close]
            let isClaim =
                variable.hasPrefix("claims.") && variable.count > "claims.".count
                && !variable.contains(where: { $0 == " " || $0 == "$" || $0 == "{" })
            if !isClaim && !self.templateVariables.contains(String(variable)) {
                return "unknown variable '${\(variable)}' in template (use \(allowed))"
            }
            rest = afterOpen[afterOpen.index(after: close)...]
        }
        return nil
    }
}
