/// Who is calling, as established by authentication. Any listener can produce one
/// (bearer token, session cookie, client certificate, PostgreSQL password).
public struct Principal: Sendable, Equatable {
    public var issuer: String?
    public var subject: String?
    public var email: String?
    public var groups: [String]
    /// Every claim of the verified token (nested JSON), empty without a token.
    public var claims: [String: JSONValue]
    /// Token expiry, seconds since the Unix epoch.
    public var expiresAt: Int64?
    /// Client certificate identity (TLS listeners with client_ca), when presented and verified.
    public var clientCertificate: ClientCertificateIdentity?

    public init(
        issuer: String? = nil,
        subject: String? = nil,
        email: String? = nil,
        groups: [String] = [],
        claims: [String: JSONValue] = [:],
        expiresAt: Int64? = nil,
        clientCertificate: ClientCertificateIdentity? = nil
    ) {
        self.issuer = issuer
        self.subject = subject
        self.email = email
        self.groups = groups
        self.claims = claims
        self.expiresAt = expiresAt
        self.clientCertificate = clientCertificate
    }
}

public struct ClientCertificateIdentity: Sendable, Equatable {
    /// The subject as an RFC 4514 string, most specific RDN first (`CN=worker,O=Example`).
    public var subject: String
    /// The subject's (most specific) common name, if it has one.
    public var commonName: String?
    public var uriSANs: [String]
    public var dnsSANs: [String]
    public var emailSANs: [String]

    public init(
        subject: String,
        commonName: String? = nil,
        uriSANs: [String] = [],
        dnsSANs: [String] = [],
        emailSANs: [String] = []
    ) {
        self.subject = subject
        self.commonName = commonName
        self.uriSANs = uriSANs
        self.dnsSANs = dnsSANs
        self.emailSANs = emailSANs
    }
}

/// The facts about a request that policy may test. Not HTTP-only: a database and user name are
/// facts too (PostgreSQL listener, later).
public struct RequestFacts: Sendable, Equatable {
    public var listener: String
    public var method: String
    /// Normalized host (lowercase, no port, no trailing dot).
    public var host: String
    /// Normalized path.
    public var path: String
    /// The real client address (after PROXY protocol and trusted-proxy handling).
    public var clientAddress: IPAddress?
    /// When the request arrived: Unix seconds (wall clock), for `time` conditions.
    public var time: Int64

    public init(listener: String, method: String, host: String, path: String, clientAddress: IPAddress?, time: Int64) {
        self.listener = listener
        self.method = method
        self.host = host
        self.path = path
        self.clientAddress = clientAddress
        self.time = time
    }
}

/// What policy decided. Denial is a value, not a throw.
public enum Decision: Sendable, Equatable {
    /// `rule` is the index of the deciding rule in its route (nil for a public route without rules).
    case allow(rule: Int?)
    case deny(reason: ReasonCode, rule: Int?)
}
