public import ProxyModel

/// The kinds of audit events (the `kind` member). Schema version 1: docs/audit-event.schema.json.
public enum AuditKind {
    /// One per HTTP request, when its response completes (or the connection ends first).
    public static let httpRequest = "http.request"
    /// A request still running after the long-request threshold: what was decided, before it completes.
    public static let httpRequestLongRunning = "http.request.long_running"
    /// Authentication failures of one client address that the rate limit kept out of the trail.
    public static let authSuppressed = "auth.suppressed"
    public static let processStart = "process.start"
    public static let processStop = "process.stop"
    public static let policyReload = "policy.reload"
    /// First event of a chain that does not continue a persisted head (says why).
    public static let chainStart = "audit.chain_start"
    /// A signed statement of the chain head (Ed25519), shipped like any event.
    public static let checkpoint = "audit.checkpoint"
    /// Events that `on_overflow: drop` lost, written when space returned.
    public static let dropped = "audit.dropped"
}

/// The schema version every event carries as `schema`.
public let auditSchemaVersion: Int64 = 1

/// An event before it is sealed into the chain. The request path builds ``HTTPRequestRecord`` values
/// (plain stored properties, no encoding); everything else is a small member dictionary.
public struct AuditEvent: Sendable {
    public enum Payload: Sendable {
        case request(HTTPRequestRecord)
        case fields([String: JSONValue])
    }

    public var kind: String
    public var time: AuditTime
    public var payload: Payload

    public init(kind: String, time: AuditTime, payload: Payload) {
        self.kind = kind
        self.time = time
        self.payload = payload
    }

    public init(kind: String, time: AuditTime, fields: [String: JSONValue]) {
        self.init(kind: kind, time: time, payload: .fields(fields))
    }

    /// The kind-specific members (the chain adds schema, kind, time, instance, seq, prev_hash and hash).
    public var members: [String: JSONValue] {
        switch self.payload {
        case .request(let record): return record.members
        case .fields(let fields): return fields
        }
    }
}

/// Who made a request, as the audit trail records it: never a token.
public struct AuditIdentity: Sendable, Equatable {
    public var issuer: String?
    public var subject: String?
    public var email: String?
    public var groups: [String]
    public var clientCertificateSubject: String?
    public var spiffeID: String?

    public init(principal: Principal) {
        self.issuer = principal.issuer
        self.subject = principal.subject
        self.email = principal.email
        self.groups = principal.groups
        self.clientCertificateSubject = principal.clientCertificate?.subject
        self.spiffeID = principal.clientCertificate.flatMap { $0.uriSANs.count == 1 ? $0.uriSANs[0] : nil }
            .flatMap { $0.hasPrefix("spiffe://") ? $0 : nil }
    }

    public init(clientCertificate: ClientCertificateIdentity) {
        self.init(principal: Principal(clientCertificate: clientCertificate))
    }

    var json: JSONValue {
        var object: [String: JSONValue] = [:]
        if let issuer { object["issuer"] = .string(issuer) }
        if let subject { object["subject"] = .string(subject) }
        if let email { object["email"] = .string(email) }
        if !self.groups.isEmpty { object["groups"] = .array(self.groups.map(JSONValue.string)) }
        if let clientCertificateSubject { object["client_cert_subject"] = .string(clientCertificateSubject) }
        if let spiffeID { object["spiffe_id"] = .string(spiffeID) }
        return .object(object)
    }
}

/// The decision class of a request: `allow` (the policy let it through; the upstream's status follows),
/// `deny` (no identity, or the policy or routing said no), `error` (the request or the upstream failed).
public enum AuditDecision: String, Sendable {
    case allow, deny, error
}

/// What the request path records for one HTTP request. Filled on the event loop as the request goes;
/// encoded off it. A class of constants: the event is handed from the event loop through the audit buffer to
/// the writer thread, and a struct of some twenty reference-counted fields cost a retain and a release per field
/// at every copy on that way.
public final class HTTPRequestRecord: Sendable {
    public let requestID: String
    public let listener: String
    public let route: String?
    public let decision: AuditDecision
    /// The model's reason code (`allowed`, `policy_denied`, `token_expired`, ...).
    public let reason: String
    /// Index of the deciding rule in its route.
    public let rule: Int?
    public let identity: AuditIdentity?
    public let clientAddress: String
    public let clientPort: Int?
    public let tlsVersion: String?
    public let sni: String?
    public let method: String
    public let host: String
    /// The normalized path (what policy saw and the upstream received); the raw target if it never normalized.
    public let path: String
    /// The query with every value redacted except the route's allow-listed parameters; nil without a query.
    public let query: String?
    /// 0 when the connection ended before a response status was sent.
    public let status: Int
    public let bytesIn: Int64
    public let bytesOut: Int64
    /// Microseconds from the request head to the first response byte; nil without a response.
    public let timeToFirstByteMicros: Int64?
    public let durationMicros: Int64
    public let upstream: String?
    public let userAgent: String?
    /// The connection ended before the response was complete.
    public let aborted: Bool
    /// Authentication failures from this address that the rate limit suppressed before this event.
    public let suppressedBefore: Int

    public init(
        requestID: String,
        listener: String,
        route: String? = nil,
        decision: AuditDecision,
        reason: String,
        rule: Int? = nil,
        identity: AuditIdentity? = nil,
        clientAddress: String,
        clientPort: Int? = nil,
        tlsVersion: String? = nil,
        sni: String? = nil,
        method: String,
        host: String,
        path: String,
        query: String? = nil,
        status: Int,
        bytesIn: Int64 = 0,
        bytesOut: Int64 = 0,
        timeToFirstByteMicros: Int64? = nil,
        durationMicros: Int64 = 0,
        upstream: String? = nil,
        userAgent: String? = nil,
        aborted: Bool = false,
        suppressedBefore: Int = 0
    ) {
        self.requestID = requestID
        self.listener = listener
        self.route = route
        self.decision = decision
        self.reason = reason
        self.rule = rule
        self.identity = identity
        self.clientAddress = clientAddress
        self.clientPort = clientPort
        self.tlsVersion = tlsVersion
        self.sni = sni
        self.method = method
        self.host = host
        self.path = path
        self.query = query
        self.status = status
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.timeToFirstByteMicros = timeToFirstByteMicros
        self.durationMicros = durationMicros
        self.upstream = upstream
        self.userAgent = userAgent
        self.aborted = aborted
        self.suppressedBefore = suppressedBefore
    }

    public var members: [String: JSONValue] {
        var m: [String: JSONValue] = [
            "request_id": .string(self.requestID),
            "listener": .string(self.listener),
            "decision": .string(self.decision.rawValue),
            "reason": .string(self.reason),
            "method": .string(self.method),
            "host": .string(self.host),
            "path": .string(self.path),
            "status": .integer(Int64(self.status)),
            "bytes_in": .integer(self.bytesIn),
            "bytes_out": .integer(self.bytesOut),
            "duration_us": .integer(self.durationMicros),
        ]
        var client: [String: JSONValue] = ["address": .string(self.clientAddress)]
        if let clientPort { client["port"] = .integer(Int64(clientPort)) }
        m["client"] = .object(client)
        if let route { m["route"] = .string(route) }
        if let rule { m["rule"] = .integer(Int64(rule)) }
        if let identity { m["identity"] = identity.json }
        if self.tlsVersion != nil || self.sni != nil {
            var tls: [String: JSONValue] = [:]
            if let tlsVersion { tls["version"] = .string(tlsVersion) }
            if let sni { tls["sni"] = .string(sni) }
            m["tls"] = .object(tls)
        }
        if let query { m["query"] = .string(query) }
        if let timeToFirstByteMicros { m["ttfb_us"] = .integer(timeToFirstByteMicros) }
        if let upstream { m["upstream"] = .string(upstream) }
        if let userAgent { m["user_agent"] = .string(userAgent) }
        if self.aborted { m["aborted"] = .bool(true) }
        if self.suppressedBefore > 0 { m["suppressed_before"] = .integer(Int64(self.suppressedBefore)) }
        return m
    }
}
