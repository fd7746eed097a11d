public import PolicyCore
public import ProxyModel

/// A request as the operator describes it to `portcullis explain` and `portcullis test`.
public struct SimulatedRequest: Sendable, Equatable {
    /// nil: the first listener (http for `http://`, https for `https://` URLs) that has a matching route.
    public var listener: String?
    public var method: String
    /// An absolute URL (`https://airflow.example.com/admin/?x=1`).
    public var url: String
    /// The real client address (after PROXY protocol and trusted proxies).
    public var clientAddress: IPAddress?
    /// Unix seconds.
    public var time: Int64

    public init(listener: String? = nil, method: String, url: String, clientAddress: IPAddress? = nil, time: Int64) {
        self.listener = listener
        self.method = method
        self.url = url
        self.clientAddress = clientAddress
        self.time = time
    }
}

extension SimulatedRequest {
    /// An HTTP method token (RFC 9110 5.6.2), as the policy file accepts in `methods`.
    public static func isValidMethod(_ text: String) -> Bool { ValueSyntax.isToken(text) }
}

/// Who the simulated caller is.
public struct SimulatedIdentity: Sendable {
    /// A verified client certificate (mTLS listeners), or nil.
    public var clientCertificate: ClientCertificateIdentity?
    /// nil: no bearer token. Otherwise called with the chosen route (audiences and accepted issuers are
    /// per route): the verified principal, or the reason the proxy would answer 401 with.
    public var bearer: (@Sendable (RouteConfig) -> Result<Principal, SimulatedRejection>)?

    public init(
        clientCertificate: ClientCertificateIdentity? = nil,
        bearer: (@Sendable (RouteConfig) -> Result<Principal, SimulatedRejection>)? = nil
    ) {
        self.clientCertificate = clientCertificate
        self.bearer = bearer
    }

    public static let anonymous = SimulatedIdentity()
}

public struct SimulatedRejection: Error, Sendable, Equatable {
    public var reason: ReasonCode
    public var message: String
    public init(_ reason: ReasonCode, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

/// What the proxy would do with a simulated request.
public struct SimulationResult: Sendable {
    public var listener: String?
    public var route: RouteConfig?
    /// The normalized host and path that routing and policy saw (nil when the URL was refused).
    public var host: String?
    public var path: String?
    /// The principal policy saw (nil: none).
    public var principal: Principal?
    /// nil when the request ended before policy ran (bad URL, no route, refused token).
    public var explanation: PolicyExplanation?
    /// 200 when the request would be forwarded; otherwise the error status.
    public var status: Int
    /// nil when allowed.
    public var reason: ReasonCode?
    /// One sentence on how it ended.
    public var message: String

    public var allowed: Bool { self.reason == nil }

    /// The index of the rule that decided, when one did.
    public var decidingRule: Int? {
        switch self.explanation?.decision {
        case .allow(let rule)?: return rule
        case .deny(_, let rule)?: return rule
        case nil: return nil
        }
    }
}

/// Runs the proxy's request path without sockets: normalization, routing, identity and policy, in the
/// same order and with the same rules as the data plane (`RequestPreparation` and `RequestStages`).
public struct PolicySimulator: Sendable {
    public let config: PortcullisConfig
    private let tables: [String: RouteTable<RouteConfig>]

    public init(config: PortcullisConfig) {
        self.config = config
        var byListener: [String: [RouteTable<RouteConfig>.Entry]] = [:]
        for route in config.routes {
            byListener[route.listener, default: []].append(.init(host: route.host, path: route.path, payload: route))
        }
        self.tables = byListener.mapValues { RouteTable($0) }
    }

    public func simulate(_ request: SimulatedRequest, identity: SimulatedIdentity) -> SimulationResult {
        var result = SimulationResult(status: 200, reason: nil, message: "")
        func refuse(_ reason: ReasonCode, _ message: String) -> SimulationResult {
            result.status = reason.status
            result.reason = reason
            result.message = message
            return result
        }

        // The URL: scheme, authority, normalized path.
        let lowered = request.url.lowercased()
        let scheme: ListenerProtocol
        if lowered.hasPrefix("https://") {
            scheme = .https
        } else if lowered.hasPrefix("http://") {
            scheme = .http
        } else {
            return refuse(.malformedRequest, "the URL must start with http:// or https://")
        }
        let target: RequestTarget
        switch PathNormalizer.normalizeTarget(request.url) {
        case .success(let normalized): target = normalized
        case .failure(let reason): return refuse(reason, "the proxy refuses this URL (\(reason.code))")
        }
        guard let authority = target.authority else { return refuse(.malformedRequest, "the URL has no host") }
        let host: String
        switch HostNormalizer.normalize(authority) {
        case .success(let normalized): host = normalized
        case .failure(let reason): return refuse(reason, "the proxy refuses this host (\(reason.code))")
        }
        result.host = host
        result.path = target.path

        // The listener and route.
        let candidates: [ListenerConfig]
        if let name = request.listener {
            guard let listener = self.config.listeners.first(where: { $0.name == name }) else {
                return refuse(.routeNotFound, "there is no listener '\(name)'")
            }
            candidates = [listener]
        } else {
            // Listeners of the URL's scheme first; then the others (TLS may end at a load balancer in front).
            let web = self.config.listeners.filter { $0.protocolKind == .http || $0.protocolKind == .https }
            candidates = web.filter { $0.protocolKind == scheme } + web.filter { $0.protocolKind != scheme }
            if candidates.isEmpty { return refuse(.routeNotFound, "no http or https listener in the policy") }
        }
        var found: (ListenerConfig, RouteConfig)?
        for listener in candidates {
            if let route = self.tables[listener.name]?.lookup(host: host, path: target.path) {
                found = (listener, route)
                break
            }
        }
        guard let (listener, route) = found else {
            result.listener = candidates.count == 1 ? candidates[0].name : nil
            return refuse(.routeNotFound, "no route matches host '\(host)' and path '\(target.path)'")
        }
        result.listener = listener.name
        result.route = route

        // Identity, as RequestStages.authenticate does it.
        var principal: Principal?
        if let auth = route.auth {
            let certificate = identity.clientCertificate
            switch auth.identityStep(hasCertificate: certificate != nil, hasToken: identity.bearer != nil) {
            case .refuse(let reason): return refuse(reason, "the route requires a client certificate")
            case .certificate: principal = certificate.map { Principal(clientCertificate: $0) }
            case .anonymous: principal = nil
            case .verifyToken:
                switch identity.bearer?(route) {
                case .success(var verified)?:
                    verified.clientCertificate = certificate
                    principal = verified
                case .failure(let rejection)?:
                    return refuse(rejection.reason, "the token is refused: \(rejection.message)")
                case nil:
                    principal = nil
                }
            }
        }
        result.principal = principal

        let facts = RequestFacts(
            listener: listener.name,
            method: request.method.uppercased(),
            host: host,
            path: target.path,
            clientAddress: request.clientAddress,
            time: request.time
        )
        let explanation = route.policy.explain(facts: facts, principal: principal)
        result.explanation = explanation
        switch explanation.decision {
        case .allow(let rule):
            result.message = rule.map { "allowed by rules[\($0)]" } ?? "allowed: public route without rules"
            return result
        case .deny(let reason, let rule):
            if reason == .unauthenticated {
                return refuse(reason, "the route requires identity and the request has none")
            }
            if let rule { return refuse(reason, "denied by rules[\(rule)]") }
            return refuse(reason, route.rules.isEmpty ? "the route has no rules (it allows nobody)" : "no rule matched")
        }
    }
}
