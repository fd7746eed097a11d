import ProxyModel
import Yams

// `listeners:` and `issuers:`.
extension PolicyParser {
    // MARK: - listeners

    /// The listeners, and what routes need to know of them (nil when `listeners:` is not a list at all).
    func parseListeners(_ node: Node) -> ([ListenerConfig], [String: ListenerInfo]?) {
        let reader = self.reader
        guard let items = reader.list(node, path: "listeners") else { return ([], nil) }
        if items.isEmpty { reader.error("listeners: at least one listener is required", at: node) }
        var configs: [ListenerConfig] = []
        var infos: [String: ListenerInfo] = [:]
        var names: [String: Node] = [:]
        var addresses: [String: (name: String, node: Node)] = [:]
        for (index, item) in items.enumerated() {
            let path = "listeners[\(index)]"
            let peeked = reader.peekName(item)
            let label = peeked.map { "listener '\($0)'" } ?? path
            guard let fields = reader.fields(item, path: path, place: "in \(label)", allowed: Self.listenerKeys) else {
                continue
            }
            let name = self.name(fields, path: path, label: label, kind: "listener", seen: &names)

            var address: HostPort?
            if let entry = reader.required(fields, "address", context: label),
                let text = reader.nonEmptyString(entry.value, path: "\(path).address")
            {
                switch ValueSyntax.parseHostPort(text) {
                case .failure(let failure): reader.error("\(path).address: \(failure.message)", at: entry.value)
                case .success(let value):
                    address = value
                    let key = Self.addressKey(value)
                    if let first = addresses[key] {
                        reader.error(
                            "\(label): address \(value) is already used by listener '\(first.name)' (line \(reader.location(first.node).line))",
                            at: entry.value
                        )
                    } else {
                        addresses[key] = (name ?? path, entry.value)
                    }
                }
            }

            var protocolKind: ListenerProtocol?
            let protocolEntry = reader.required(fields, "protocol", context: label)
            if let entry = protocolEntry, let text = reader.string(entry.value, path: "\(path).protocol") {
                protocolKind = ListenerProtocol(rawValue: text)
                if protocolKind == nil {
                    var message =
                        "\(path).protocol: unknown protocol '\(text)' (expected http, https, admin or postgres)"
                    if let suggestion = ValueSyntax.suggestion(
                        for: text,
                        among: ListenerProtocol.allCases.map(\.rawValue)
                    ) {
                        message += "; did you mean '\(suggestion)'?"
                    }
                    reader.error(message, at: entry.value)
                }
            }

            var tls: ListenerTLSConfig?
            var tlsFailed = false
            if let entry = fields["tls"] {
                if let protocolKind, protocolKind != .https {
                    reader.error(
                        "\(label): 'tls' is only valid with protocol https (this listener is \(protocolKind.rawValue))",
                        at: entry.key
                    )
                }
                tls = self.parseTLS(entry.value, path: "\(path).tls")
                tlsFailed = tls == nil
            } else if protocolKind == .https, let entry = protocolEntry {
                reader.error("\(label): protocol https needs a 'tls' section with the certificates", at: entry.value)
            }

            var proxyProtocol = false
            if let entry = fields["proxy_protocol"] {
                proxyProtocol = reader.bool(entry.value, path: "\(path).proxy_protocol") ?? false
            }

            var trustedProxies: [CIDR] = []
            if let entry = fields["trusted_proxies"],
                let values = reader.strings(
                    entry.value,
                    path: "\(path).trusted_proxies",
                    allowSingle: false,
                    emptyReason: nil
                )
            {
                for (offset, (text, valueNode)) in values.enumerated() {
                    if let cidr = CIDR.parse(text) {
                        trustedProxies.append(cidr)
                    } else {
                        reader.error(
                            "\(path).trusted_proxies[\(offset)]: invalid CIDR '\(text)' (expected like 10.0.0.0/8 or 2001:db8::/32)",
                            at: valueNode
                        )
                    }
                }
            }

            var limits = ListenerLimits()
            if let entry = fields["limits"] { limits = self.parseLimits(entry.value, path: "\(path).limits") ?? limits }

            if let name {
                // A `tls` section with errors of its own still tells whether it names a client CA.
                let namesClientCA =
                    tlsFailed && fields["tls"].map { reader.mappingHasKey($0.value, "client_ca") } == true
                infos[name] = ListenerInfo(
                    name: name,
                    protocolKind: protocolKind,
                    hasClientCA: tls?.clientCA != nil || namesClientCA
                )
            }
            if let name, let address, let protocolKind {
                configs.append(
                    ListenerConfig(
                        name: name,
                        address: address,
                        protocolKind: protocolKind,
                        tls: tls,
                        proxyProtocol: proxyProtocol,
                        trustedProxies: trustedProxies,
                        limits: limits,
                        location: reader.location(item)
                    )
                )
            }
        }
        return (configs, infos)
    }

    static func addressKey(_ address: HostPort) -> String {
        let host = IPAddress.parse(address.host).map { "\($0)" } ?? address.host.lowercased()
        return "\(host) \(address.port)"
    }

    func parseTLS(_ node: Node, path: String) -> ListenerTLSConfig? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.listenerTLSKeys) else {
            return nil
        }
        var failed = false
        var certificates: [CertificatePair] = []
        if let entry = reader.required(fields, "certificates", context: path) {
            if let items = reader.list(entry.value, path: "\(path).certificates") {
                if items.isEmpty {
                    reader.error("\(path).certificates: at least one certificate is required", at: entry.value)
                    failed = true
                }
                for (index, item) in items.enumerated() {
                    let itemPath = "\(path).certificates[\(index)]"
                    guard
                        let pair = reader.fields(
                            item,
                            path: itemPath,
                            place: "in \(itemPath)",
                            allowed: Self.certificateKeys
                        )
                    else {
                        failed = true
                        continue
                    }
                    let certificate = reader.required(pair, "certificate", context: itemPath).flatMap {
                        self.file($0.value, path: "\(itemPath).certificate")
                    }
                    let privateKey = reader.required(pair, "private_key", context: itemPath).flatMap {
                        self.file($0.value, path: "\(itemPath).private_key")
                    }
                    if let certificate, let privateKey {
                        certificates.append(CertificatePair(certificate: certificate, privateKey: privateKey))
                    } else {
                        failed = true
                    }
                }
            } else {
                failed = true
            }
        } else {
            failed = true
        }
        var clientCA: String?
        if let entry = fields["client_ca"] {
            clientCA = self.file(entry.value, path: "\(path).client_ca")
            failed = failed || clientCA == nil
        }
        var clientAuth = ClientAuthMode.optional
        if let entry = fields["client_auth"] {
            if !fields.has("client_ca") {
                reader.error("\(path).client_auth: only valid together with 'client_ca'", at: entry.key)
            }
            if let text = reader.string(entry.value, path: "\(path).client_auth") {
                if let mode = ClientAuthMode(rawValue: text) {
                    clientAuth = mode
                } else {
                    reader.error(
                        "\(path).client_auth: expected 'optional' or 'required', got '\(text)'",
                        at: entry.value
                    )
                }
            }
        }
        var crl: String?
        if let entry = fields["crl"] {
            if !fields.has("client_ca") {
                reader.error("\(path).crl: only valid together with 'client_ca'", at: entry.key)
            }
            crl = self.file(entry.value, path: "\(path).crl")
        }
        var minVersion = TLSMinimumVersion.tls12
        if let entry = fields["min_version"] {
            if let value = self.tlsMinimumVersion(entry.value, path: "\(path).min_version") {
                minVersion = value
            } else {
                failed = true
            }
        }
        guard !failed else { return nil }
        return ListenerTLSConfig(
            certificates: certificates,
            clientCA: clientCA,
            clientAuth: clientAuth,
            crl: crl,
            minVersion: minVersion
        )
    }

    /// `tls:` keys of a listener (`tlsKeys` plus the TLS issue's additions).
    static let listenerTLSKeys = tlsKeys + ["min_version"]

    /// `min_version: "1.2" | "1.3"` (a plain `1.2` reads as its text).
    func tlsMinimumVersion(_ node: Node, path: String) -> TLSMinimumVersion? {
        guard let text = self.reader.string(node, path: path) else { return nil }
        guard let version = TLSMinimumVersion(rawValue: text) else {
            self.reader.error(
                "\(path): expected \"1.2\" or \"1.3\", got '\(text)' (older TLS versions are never accepted)",
                at: node
            )
            return nil
        }
        return version
    }

    func parseLimits(_ node: Node, path: String) -> ListenerLimits? {
        let reader = self.reader
        guard let fields = reader.fields(node, path: path, place: "in \(path)", allowed: Self.limitsKeys) else {
            return nil
        }
        var limits = ListenerLimits()
        if let entry = fields["max_connections"],
            let value = reader.int(entry.value, path: "\(path).max_connections", in: 1...Int.max)
        {
            limits.maxConnections = value
        }
        if let entry = fields["max_header_bytes"],
            let value = reader.size(entry.value, path: "\(path).max_header_bytes")
        {
            if (1024...1024 * 1024).contains(value) {
                limits.maxHeaderBytes = Int(value)
            } else {
                reader.error(
                    "\(path).max_header_bytes: must be between 1KiB and 1MiB, got \(value) bytes",
                    at: entry.value
                )
            }
        }
        if let entry = fields["max_header_count"],
            let value = reader.int(entry.value, path: "\(path).max_header_count", in: 1...1000)
        {
            limits.maxHeaderCount = value
        }
        if let entry = fields["header_read_timeout"],
            let value = reader.duration(entry.value, path: "\(path).header_read_timeout", positive: true)
        {
            limits.headerReadTimeout = value
        }
        if let entry = fields["idle_timeout"],
            let value = reader.duration(entry.value, path: "\(path).idle_timeout", positive: true)
        {
            limits.idleTimeout = value
        }
        if let entry = fields["max_requests_per_connection"],
            let value = reader.int(entry.value, path: "\(path).max_requests_per_connection", in: 1...Int.max)
        {
            limits.maxRequestsPerConnection = value
        }
        return limits
    }

    // MARK: - issuers

    /// The issuers, and what routes need to know of them (nil when `issuers:` is not a list at all).
    func parseIssuers(_ node: Node) -> ([IssuerConfig], [String: IssuerInfo]?) {
        let reader = self.reader
        guard let items = reader.list(node, path: "issuers") else { return ([], nil) }
        var configs: [IssuerConfig] = []
        var infos: [String: IssuerInfo] = [:]
        var names: [String: Node] = [:]
        for (index, item) in items.enumerated() {
            let path = "issuers[\(index)]"
            let label = reader.peekName(item).map { "issuer '\($0)'" } ?? path
            guard let fields = reader.fields(item, path: path, place: "in \(label)", allowed: Self.issuerKeys) else {
                continue
            }
            let errorsBefore = reader.diagnostics.count
            let name = self.name(fields, path: path, label: label, kind: "issuer", seen: &names)

            var issuerURL: String?
            if let entry = reader.required(fields, "issuer", context: label),
                let text = reader.nonEmptyString(entry.value, path: "\(path).issuer")
            {
                switch ValueSyntax.parseIdentityURL(text, allowQuery: false) {
                case .failure(let failure): reader.error("\(path).issuer: \(failure.message)", at: entry.value)
                case .success: issuerURL = text
                }
            }

            var audiences: [String]?
            if let entry = fields["audiences"] {
                audiences = self.nonEmptyStrings(
                    entry.value,
                    path: "\(path).audiences",
                    emptyReason: "name at least one audience or remove the key"
                )
            }

            var jwksURI: String?
            if let entry = fields["jwks_uri"], let text = reader.nonEmptyString(entry.value, path: "\(path).jwks_uri") {
                switch ValueSyntax.parseIdentityURL(text, allowQuery: true) {
                case .failure(let failure): reader.error("\(path).jwks_uri: \(failure.message)", at: entry.value)
                case .success: jwksURI = text
                }
            }
            var jwksFile: String?
            if let entry = fields["jwks_file"] { jwksFile = self.file(entry.value, path: "\(path).jwks_file") }
            if let uri = fields["jwks_uri"], let file = fields["jwks_file"] {
                let second =
                    fields.order.firstIndex(of: "jwks_uri")! < fields.order.firstIndex(of: "jwks_file")! ? file : uri
                reader.error(
                    "\(label): give either 'jwks_uri' or 'jwks_file', not both (neither: keys come from OIDC discovery at the issuer)",
                    at: second.key
                )
            }

            var algorithms = IssuerConfig.defaultAlgorithms
            if let entry = fields["algorithms"],
                let values = reader.strings(
                    entry.value,
                    path: "\(path).algorithms",
                    allowSingle: false,
                    emptyReason: "no token could ever verify; remove the key for the defaults"
                )
            {
                var accepted: [String] = []
                for (offset, (text, valueNode)) in values.enumerated() {
                    let itemPath = "\(path).algorithms[\(offset)]"
                    if text.lowercased() == "none" {
                        reader.error(
                            "\(itemPath): algorithm '\(text)' is never accepted (unsigned tokens)",
                            at: valueNode
                        )
                    } else if text.uppercased().hasPrefix("HS") {
                        reader.error(
                            "\(itemPath): algorithm '\(text)' is never accepted (HMAC with a public key is an attack)",
                            at: valueNode
                        )
                    } else if IssuerConfig.supportedAlgorithms.contains(text) {
                        if !accepted.contains(text) { accepted.append(text) }
                    } else {
                        var message =
                            "\(itemPath): unsupported algorithm '\(text)' (supported: \(IssuerConfig.supportedAlgorithms.joined(separator: ", ")))"
                        if let suggestion = ValueSyntax.suggestion(for: text, among: IssuerConfig.supportedAlgorithms) {
                            message += "; did you mean '\(suggestion)'?"
                        }
                        reader.error(message, at: valueNode)
                    }
                }
                algorithms = accepted
            }

            var clockSkew: Duration = .seconds(60)
            if let entry = fields["clock_skew"],
                let value = reader.duration(
                    entry.value,
                    path: "\(path).clock_skew",
                    positive: false,
                    maximum: Self.maximumClockSkew
                )
            {
                clockSkew = value
            }
            var groupsClaim = "groups"
            if let entry = fields["groups_claim"],
                let value = reader.nonEmptyString(entry.value, path: "\(path).groups_claim")
            {
                groupsClaim = value
            }
            var emailClaim = "email"
            if let entry = fields["email_claim"],
                let value = reader.nonEmptyString(entry.value, path: "\(path).email_claim")
            {
                emailClaim = value
            }
            var requiredType: String?
            if let entry = fields["typ"] { requiredType = reader.nonEmptyString(entry.value, path: "\(path).typ") }
            var tokenCache = true
            if let entry = fields["token_cache"] {
                // `on`/`off` read as the words they are; YAML booleans work too.
                if case .scalar(let scalar) = entry.value, scalar.string == "on" || scalar.string == "off" {
                    tokenCache = scalar.string == "on"
                } else if let value = reader.bool(entry.value, path: "\(path).token_cache") {
                    tokenCache = value
                }
            }
            var unknownKeyInterval: Duration = .seconds(30)
            if let entry = fields["unknown_kid_interval"],
                let value = reader.duration(entry.value, path: "\(path).unknown_kid_interval", positive: true)
            {
                unknownKeyInterval = value
            }
            var maxTokenBytes = 8 * 1024
            if let entry = fields["max_token_size"], let value = reader.size(entry.value, path: "\(path).max_token_size") {
                if value < 256 || value > 64 * 1024 {
                    reader.error("\(path).max_token_size: must be between 256 bytes and 64KiB", at: entry.value)
                } else {
                    maxTokenBytes = Int(value)
                }
            }

            if let name { infos[name] = IssuerInfo(name: name, audiences: audiences, url: issuerURL) }
            if let name, let issuerURL, reader.diagnostics.count == errorsBefore {
                configs.append(
                    IssuerConfig(
                        name: name,
                        issuer: issuerURL,
                        audiences: audiences ?? [],
                        jwksURI: jwksURI,
                        jwksFile: jwksFile,
                        algorithms: algorithms,
                        clockSkew: clockSkew,
                        groupsClaim: groupsClaim,
                        emailClaim: emailClaim,
                        requiredType: requiredType,
                        tokenCache: tokenCache,
                        unknownKeyRefetchInterval: unknownKeyInterval,
                        maxTokenBytes: maxTokenBytes,
                        location: reader.location(item)
                    )
                )
            }
        }
        return (configs, infos)
    }
}
