public import PolicyCore
public import ProxyModel

/// A validated policy file: typed, defaulted, with source locations for tools.
/// Built only by ``ConfigLoader``; the only place YAML is read.
public struct PortcullisConfig: Sendable, Equatable {
    public var version: Int
    public var server: ServerSettings
    public var listeners: [ListenerConfig]
    public var issuers: [IssuerConfig]
    public var routes: [RouteConfig]
    public var audit: AuditConfig

    public init(
        version: Int = 1,
        server: ServerSettings = .init(),
        listeners: [ListenerConfig],
        issuers: [IssuerConfig] = [],
        routes: [RouteConfig],
        audit: AuditConfig = .default
    ) {
        self.version = version
        self.server = server
        self.listeners = listeners
        self.issuers = issuers
        self.routes = routes
        self.audit = audit
    }
}

/// `server:` (optional): process-wide settings.
public struct ServerSettings: Sendable, Equatable {
    /// Identifies this replica in logs and (later) its audit chain. Default: the host name.
    public var instanceID: String?
    /// How long in-flight requests may take to finish after SIGTERM. Default 30 s.
    public var shutdownGracePeriod: Duration
    /// How often the policy file is checked for changes (mtime and digest). Default 2 s; 0 disables.
    public var reloadPollInterval: Duration

    public init(instanceID: String? = nil, shutdownGracePeriod: Duration = .seconds(30), reloadPollInterval: Duration = .seconds(2)) {
        self.instanceID = instanceID
        self.shutdownGracePeriod = shutdownGracePeriod
        self.reloadPollInterval = reloadPollInterval
    }
}

public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// A host name or an IP literal (IPv6 without brackets).
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}

public enum ListenerProtocol: String, Sendable, Hashable, CaseIterable {
    case http
    case https
    case admin
    case postgres
}

public struct ListenerConfig: Sendable, Equatable {
    public var name: String
    public var address: HostPort
    public var protocolKind: ListenerProtocol
    public var tls: ListenerTLSConfig?
    /// PROXY protocol v1/v2 expected from a load balancer (TLS issue).
    public var proxyProtocol: Bool
    /// Peers whose X-Forwarded-For / -Proto / -Host and X-Request-Id are believed.
    public var trustedProxies: [CIDR]
    public var limits: ListenerLimits
    public var location: SourceLocation?

    public init(
        name: String,
        address: HostPort,
        protocolKind: ListenerProtocol,
        tls: ListenerTLSConfig? = nil,
        proxyProtocol: Bool = false,
        trustedProxies: [CIDR] = [],
        limits: ListenerLimits = .init(),
        location: SourceLocation? = nil
    ) {
        self.name = name
        self.address = address
        self.protocolKind = protocolKind
        self.tls = tls
        self.proxyProtocol = proxyProtocol
        self.trustedProxies = trustedProxies
        self.limits = limits
        self.location = location
    }
}

/// `limits:` on a listener. Every resource has a bound (DESIGN.md invariant 7).
public struct ListenerLimits: Sendable, Equatable {
    /// Open client connections; further ones are closed at accept. Default 10,000.
    public var maxConnections: Int
    /// Request line plus header bytes; beyond: 431. Default 32 KiB.
    public var maxHeaderBytes: Int
    /// Number of header fields; beyond: 431. Default 100.
    public var maxHeaderCount: Int
    /// Time from the first byte of a request (or connection open) to its complete head; beyond: 408 and close. Default 10 s.
    public var headerReadTimeout: Duration
    /// Idle keep-alive time between requests; beyond: close. Default 60 s.
    public var idleTimeout: Duration
    /// Requests per connection before the proxy answers with `Connection: close`. Default 1,000.
    public var maxRequestsPerConnection: Int

    public init(
        maxConnections: Int = 10_000,
        maxHeaderBytes: Int = 32 * 1024,
        maxHeaderCount: Int = 100,
        headerReadTimeout: Duration = .seconds(10),
        idleTimeout: Duration = .seconds(60),
        maxRequestsPerConnection: Int = 1_000
    ) {
        self.maxConnections = maxConnections
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.headerReadTimeout = headerReadTimeout
        self.idleTimeout = idleTimeout
        self.maxRequestsPerConnection = maxRequestsPerConnection
    }
}

public struct CertificatePair: Sendable, Equatable {
    public var certificate: String
    public var privateKey: String
    public init(certificate: String, privateKey: String) {
        self.certificate = certificate
        self.privateKey = privateKey
    }
}

public enum ClientAuthMode: String, Sendable, Hashable {
    case optional
    case required
}

/// `min_version:` of a TLS section: the oldest TLS version accepted (TLS 1.3 is always allowed).
public enum TLSMinimumVersion: String, Sendable, Hashable, CaseIterable {
    case tls12 = "1.2"
    case tls13 = "1.3"
}

/// `tls:` on an https listener. File paths are absolute (resolved against the policy file's folder).
public struct ListenerTLSConfig: Sendable, Equatable {
    public var certificates: [CertificatePair]
    public var clientCA: String?
    public var clientAuth: ClientAuthMode
    public var crl: String?
    /// `min_version:` "1.2" (default) or "1.3".
    public var minVersion: TLSMinimumVersion
    public init(
        certificates: [CertificatePair],
        clientCA: String? = nil,
        clientAuth: ClientAuthMode = .optional,
        crl: String? = nil,
        minVersion: TLSMinimumVersion = .tls12
    ) {
        self.certificates = certificates
        self.clientCA = clientCA
        self.clientAuth = clientAuth
        self.crl = crl
        self.minVersion = minVersion
    }
}

/// `issuers:` entry (validated now, used by the identity issue).
public struct IssuerConfig: Sendable, Equatable {
    public var name: String
    public var issuer: String
    public var audiences: [String]
    public var jwksURI: String?
    /// Absolute path.
    public var jwksFile: String?
    public var algorithms: [String]
    public var clockSkew: Duration
    public var groupsClaim: String
    public var emailClaim: String
    public var requiredType: String?
    /// Cache verified tokens (SHA-256 keyed, until `exp`); `token_cache: off` verifies every request.
    public var tokenCache: Bool
    /// An unknown `kid` triggers at most one JWKS refetch per this interval (single-flight). Default 30 s.
    public var unknownKeyRefetchInterval: Duration
    /// Tokens longer than this are refused before parsing. Default 8 KiB.
    public var maxTokenBytes: Int
    public var location: SourceLocation?

    public static let defaultAlgorithms = ["RS256", "PS256", "ES256", "EdDSA"]
    public static let supportedAlgorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]

    public init(
        name: String,
        issuer: String,
        audiences: [String] = [],
        jwksURI: String? = nil,
        jwksFile: String? = nil,
        algorithms: [String] = IssuerConfig.defaultAlgorithms,
        clockSkew: Duration = .seconds(60),
        groupsClaim: String = "groups",
        emailClaim: String = "email",
        requiredType: String? = nil,
        tokenCache: Bool = true,
        unknownKeyRefetchInterval: Duration = .seconds(30),
        maxTokenBytes: Int = 8 * 1024,
        location: SourceLocation? = nil
    ) {
        self.name = name
        self.issuer = issuer
        self.audiences = audiences
        self.jwksURI = jwksURI
        self.jwksFile = jwksFile
        self.algorithms = algorithms
        self.clockSkew = clockSkew
        self.groupsClaim = groupsClaim
        self.emailClaim = emailClaim
        self.requiredType = requiredType
        self.tokenCache = tokenCache
        self.unknownKeyRefetchInterval = unknownKeyRefetchInterval
        self.maxTokenBytes = maxTokenBytes
        self.location = location
    }
}

public enum UpstreamScheme: String, Sendable, Hashable {
    case http
    case https
}

/// `upstream:` of a route: a URL, a list of URLs (same scheme), or a mapping with `endpoints:` and pool settings.
public struct UpstreamConfig: Sendable, Equatable {
    public var scheme: UpstreamScheme
    /// Round robin over these; host names are resolved again on every new connection.
    public var endpoints: [HostPort]
    /// Connections per endpoint per event loop (a bound, not a pre-allocation). Default 128.
    public var maxConnectionsPerEndpoint: Int
    /// Requests waiting for a connection when all are busy; beyond: 503. Default 1,024.
    public var maxPendingRequests: Int
    /// A pooled keep-alive connection unused for this long is closed. Default 60 s.
    public var idleTimeout: Duration
    /// `tls:` of an https upstream (mapping form only); nil: verify against the system trust store.
    public var tls: UpstreamTLSConfig?

    public init(
        scheme: UpstreamScheme,
        endpoints: [HostPort],
        maxConnectionsPerEndpoint: Int = 128,
        maxPendingRequests: Int = 1_024,
        idleTimeout: Duration = .seconds(60),
        tls: UpstreamTLSConfig? = nil
    ) {
        self.scheme = scheme
        self.endpoints = endpoints
        self.maxConnectionsPerEndpoint = maxConnectionsPerEndpoint
        self.maxPendingRequests = maxPendingRequests
        self.idleTimeout = idleTimeout
        self.tls = tls
    }
}

/// `upstream: { endpoints: [https://...], tls: {...} }`: how the proxy connects to an https upstream.
/// File paths are absolute (resolved against the policy file's folder).
public struct UpstreamTLSConfig: Sendable, Hashable {
    /// `ca:` a PEM bundle of the CAs trusted for this upstream; nil: the system trust store.
    public var caFile: String?
    /// `client_certificate:` and `client_key:` (both or neither): the proxy's certificate for upstream mTLS.
    public var clientCertificate: String?
    public var clientKey: String?
    /// `server_name:` the name sent as SNI and verified in the upstream certificate; nil: the endpoint host
    /// when it is a DNS name (an IP endpoint sends no SNI and is verified against the certificate's IP SANs).
    public var serverName: String?
    /// `min_version:` "1.2" (default) or "1.3".
    public var minVersion: TLSMinimumVersion
    /// `insecure_skip_verify: true` disables certificate verification (a warning at load). Default false.
    public var insecureSkipVerify: Bool

    public init(
        caFile: String? = nil,
        clientCertificate: String? = nil,
        clientKey: String? = nil,
        serverName: String? = nil,
        minVersion: TLSMinimumVersion = .tls12,
        insecureSkipVerify: Bool = false
    ) {
        self.caFile = caFile
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
        self.serverName = serverName
        self.minVersion = minVersion
        self.insecureSkipVerify = insecureSkipVerify
    }
}

/// `timeouts:` on a route.
public struct RouteTimeouts: Sendable, Equatable {
    /// TCP connect to the upstream; beyond: 504. Default 5 s.
    public var connect: Duration
    /// From the request being sent to the upstream's response head; beyond: 504. Default 60 s.
    public var response: Duration
    /// Silence in either direction once the exchange is under way; beyond: the exchange is aborted. Default 300 s.
    public var idle: Duration

    public init(connect: Duration = .seconds(5), response: Duration = .seconds(60), idle: Duration = .seconds(300)) {
        self.connect = connect
        self.response = response
        self.idle = idle
    }
}

public enum ClientCertRequirement: String, Sendable, Hashable {
    case required
    case optional
}

/// What the identity stage does with a request on an `auth` route, before any token is parsed. One
/// place for the proxy (`RequestStages`) and the policy tools (`PolicySimulator`).
public enum IdentityStep: Sendable, Equatable {
    /// Answer 401 with this reason (a required client certificate is missing).
    case refuse(ReasonCode)
    /// The identity is the client certificate (none without one: policy answers 401).
    case certificate
    /// No identity (policy answers 401).
    case anonymous
    /// Verify the bearer token; its identity carries the certificate, if any.
    case verifyToken
}

/// `auth:` on a route.
public struct RouteAuthConfig: Sendable, Equatable {
    public var issuers: [String]
    /// Replaces the issuers' audiences when set, so a token for one service opens no other.
    public var audiences: [String]?
    public var clientCert: ClientCertRequirement?
    /// Also read the bearer token from this header (after `Authorization: Bearer`).
    public var tokenHeader: String?
    /// Also read the bearer token from this cookie. Never from the query string.
    public var tokenCookie: String?

    /// The identity stage's decision for a request with or without a client certificate and a token.
    public func identityStep(hasCertificate: Bool, hasToken: Bool) -> IdentityStep {
        if self.clientCert == .required && !hasCertificate { return .refuse(.clientCertificateRequired) }
        // client_cert only: the certificate is the identity.
        if self.issuers.isEmpty { return .certificate }
        if hasToken { return .verifyToken }
        // No token: a route that also takes client certificates accepts the certificate alone.
        return self.clientCert != nil ? .certificate : .anonymous
    }

    public init(
        issuers: [String] = [],
        audiences: [String]? = nil,
        clientCert: ClientCertRequirement? = nil,
        tokenHeader: String? = nil,
        tokenCookie: String? = nil
    ) {
        self.issuers = issuers
        self.audiences = audiences
        self.clientCert = clientCert
        self.tokenHeader = tokenHeader
        self.tokenCookie = tokenCookie
    }
}

/// One `identity_headers:` entry: a header the proxy sets from the identity (and always strips from clients).
public struct IdentityHeader: Sendable, Equatable {
    public var name: String
    /// A template such as `${email}`; rendered by the identity stage.
    public var template: String
    public init(name: String, template: String) {
        self.name = name
        self.template = template
    }
}

public struct RouteConfig: Sendable, Equatable {
    public var name: String
    public var listener: String
    public var host: HostPattern
    public var path: PathPattern
    public var upstream: UpstreamConfig
    public var isPublic: Bool
    public var auth: RouteAuthConfig?
    public var identityHeaders: [IdentityHeader]
    public var rules: [Rule]
    /// true (default): the client's Host header is forwarded; false: Host is set to the upstream's host[:port].
    public var preserveHost: Bool
    /// Replaces the matched path prefix before forwarding (`/api/*` with `prefix_rewrite: /` sends `/api/x` as `/x`).
    public var prefixRewrite: String?
    public var timeouts: RouteTimeouts
    /// Request body limit in bytes; beyond: 413. Default 64 MiB.
    public var maxRequestBodyBytes: Int64
    /// Forward the client's `Authorization` header to the upstream (default false on `auth` routes).
    public var forwardToken: Bool
    /// `explain_denials: true`: 403 bodies list the rules tried and the condition that failed in each.
    public var explainDenials: Bool
    /// Query parameters whose values the audit trail keeps (`audit_query: [page]`); every other value is redacted.
    public var auditQueryParameters: Set<String>
    public var location: SourceLocation?

    public static let defaultMaxRequestBodyBytes: Int64 = 64 * 1024 * 1024

    public init(
        name: String,
        listener: String,
        host: HostPattern = .any,
        path: PathPattern = .prefix(""),
        upstream: UpstreamConfig,
        isPublic: Bool = false,
        auth: RouteAuthConfig? = nil,
        identityHeaders: [IdentityHeader] = [],
        rules: [Rule] = [],
        preserveHost: Bool = true,
        prefixRewrite: String? = nil,
        timeouts: RouteTimeouts = .init(),
        maxRequestBodyBytes: Int64 = RouteConfig.defaultMaxRequestBodyBytes,
        forwardToken: Bool = false,
        explainDenials: Bool = false,
        auditQueryParameters: Set<String> = [],
        location: SourceLocation? = nil
    ) {
        self.name = name
        self.listener = listener
        self.host = host
        self.path = path
        self.upstream = upstream
        self.isPublic = isPublic
        self.auth = auth
        self.identityHeaders = identityHeaders
        self.rules = rules
        self.preserveHost = preserveHost
        self.prefixRewrite = prefixRewrite
        self.timeouts = timeouts
        self.maxRequestBodyBytes = maxRequestBodyBytes
        self.forwardToken = forwardToken
        self.explainDenials = explainDenials
        self.auditQueryParameters = auditQueryParameters
        self.location = location
    }

    /// The route's compiled policy (rules are compiled matchers already; this adds the route's context).
    public var policy: RoutePolicy {
        let prefix: String
        switch self.path {
        case .prefix(let p): prefix = p
        case .exact: prefix = ""
        }
        return RoutePolicy(isPublic: self.isPublic, rules: self.rules, pathPrefix: prefix, explainDenials: self.explainDenials)
    }
}
