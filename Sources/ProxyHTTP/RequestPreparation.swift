import NIOHTTP1
import PolicyCore
import ProxyConfig
import ProxyModel
import ProxyTransport

/// What the request path knows about the client connection.
struct ConnectionInfo: Sendable {
    var listener: ListenerConfig
    /// The TCP peer (or, later, the PROXY protocol source).
    var peer: IPAddress?
    var peerDescription: String
    /// `http` or `https`.
    var scheme: String
    /// The peer is in the listener's `trusted_proxies`.
    var peerIsTrusted: Bool
    /// TLS facts of the connection (SNI, version, verified client certificate), once the handshake completed.
    var tls: TLSConnectionInfo?

    init(listener: ListenerConfig, peer: IPAddress?, peerDescription: String, scheme: String) {
        self.listener = listener
        self.peer = peer
        self.peerDescription = peerDescription
        self.scheme = scheme
        self.peerIsTrusted = false
        self.peerIsTrusted = self.isTrusted(peer)
    }

    func isTrusted(_ address: IPAddress?) -> Bool {
        guard let address else { return false }
        return self.listener.trustedProxies.contains { $0.contains(address) }
    }

    /// The PROXY protocol header named the real client: it replaces the TCP peer (the load balancer).
    mutating func applyProxyProtocolSource(_ address: IPAddress) {
        self.peer = address
        self.peerDescription = address.description
        self.peerIsTrusted = self.isTrusted(address)
    }
}

/// How the request body is framed.
enum RequestBodyFraming: Sendable, Equatable {
    case none
    case length(Int64)
    case chunked

    var hasBody: Bool {
        switch self {
        case .none, .length(0): return false
        default: return true
        }
    }
}

/// A request that passed parsing, normalization and routing, ready for the identity and policy stages.
/// A class, not a struct: the exchange keeps it and the request path reads it at every stage; a struct of this
/// size was copied (a retain and release per field) at each of those reads.
final class PreparedRequest: Sendable {
    let route: CompiledRoute
    let requestID: String
    let facts: RequestFacts
    /// The head the upstream receives (sanitized, forwarded headers set, normalized target).
    let upstreamHead: HTTPRequestHead
    let clientVersion: HTTPVersion
    let clientKeepAlive: Bool
    let expectContinue: Bool
    let framing: RequestBodyFraming
    /// Safe to send again on a fresh connection if a pooled one turned out stale (RFC 9110 9.2.2).
    let isIdempotent: Bool
    /// The request asked for a protocol upgrade, which this version does not proxy: the connection closes after it.
    let requestedUpgrade: Bool
    /// The original request head (for the identity stage: Authorization, cookies). Never logged.
    let clientHead: HTTPRequestHead

    init(
        route: CompiledRoute,
        requestID: String,
        facts: RequestFacts,
        upstreamHead: HTTPRequestHead,
        clientVersion: HTTPVersion,
        clientKeepAlive: Bool,
        expectContinue: Bool,
        framing: RequestBodyFraming,
        isIdempotent: Bool,
        requestedUpgrade: Bool,
        clientHead: HTTPRequestHead
    ) {
        self.route = route
        self.requestID = requestID
        self.facts = facts
        self.upstreamHead = upstreamHead
        self.clientVersion = clientVersion
        self.clientKeepAlive = clientKeepAlive
        self.expectContinue = expectContinue
        self.framing = framing
        self.isIdempotent = isIdempotent
        self.requestedUpgrade = requestedUpgrade
        self.clientHead = clientHead
    }
}

enum PreparationOutcome {
    case forward(PreparedRequest)
    /// Refuse with this reason. `close`: the request declared a body we will not read.
    case reject(ReasonCode, requestID: String, route: String?, close: Bool)
}

/// Parsing, normalization, routing and header sanitation of one request head: the stages before identity.
/// Pure apart from the request id, which the caller generates.
enum RequestPreparation {
    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
        default: return false
        }
    }

    /// X-Request-Id from a trusted proxy is kept when 1...128 characters of `[A-Za-z0-9._:-]`.
    static func isWellFormedRequestID(_ value: String) -> Bool {
        let utf8 = value.utf8
        guard !utf8.isEmpty, utf8.count <= 128 else { return false }
        for b in utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"),
                UInt8(ascii: "-"):
                continue
            default:
                return false
            }
        }
        return true
    }

    static func prepare(
        head: HTTPRequestHead,
        connection: ConnectionInfo,
        snapshot: RuntimeSnapshot,
        generateRequestID: () -> String
    ) -> PreparationOutcome {
        // Request id first, so that every refusal carries one.
        var requestID: String? = nil
        if connection.peerIsTrusted, let incoming = head.headers.first(name: "x-request-id"),
            isWellFormedRequestID(incoming)
        {
            requestID = incoming
        }
        let id = requestID ?? generateRequestID()

        // Framing (llhttp already refuses most ambiguity; these checks are the second line).
        let framing: RequestBodyFraming
        let transferEncodings = head.headers[canonicalForm: "transfer-encoding"]
        let contentLengths = head.headers[canonicalForm: "content-length"]
        let declaresBody = !transferEncodings.isEmpty || contentLengths.contains { $0 != "0" }
        if !transferEncodings.isEmpty {
            if !contentLengths.isEmpty {
                return .reject(.ambiguousFraming, requestID: id, route: nil, close: true)
            }
            guard transferEncodings.count == 1, transferEncodings[0].lowercased() == "chunked" else {
                return .reject(.unsupportedTransferEncoding, requestID: id, route: nil, close: true)
            }
            framing = .chunked
        } else if let first = contentLengths.first {
            guard contentLengths.allSatisfy({ $0 == first }), let length = Int64(first), length >= 0,
                first.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
            else {
                return .reject(.ambiguousFraming, requestID: id, route: nil, close: true)
            }
            framing = length == 0 ? .none : .length(length)
        } else {
            framing = .none
        }

        guard head.version.major == 1, head.version.minor <= 1 else {
            return .reject(.httpVersionNotSupported, requestID: id, route: nil, close: true)
        }
        if head.method == .CONNECT {
            return .reject(.unsupportedTargetForm, requestID: id, route: nil, close: true)
        }

        // Target.
        let target: RequestTarget
        switch PathNormalizer.normalizeTarget(head.uri) {
        case .success(let t): target = t
        case .failure(let reason): return .reject(reason, requestID: id, route: nil, close: declaresBody)
        }

        // Host. The common case (one Host header holding one plain value) without the array `canonicalForm` builds.
        let hostValue: String?
        if let sole = HeaderSanitizer.soleValue(of: "host", in: head.headers), HeaderSanitizer.isSingleListElement(sole) {
            hostValue = sole
        } else {
            let hostHeaders = head.headers[canonicalForm: "host"]
            if hostHeaders.count > 1 {
                return .reject(.hostMismatch, requestID: id, route: nil, close: declaresBody)
            }
            hostValue = hostHeaders.first.map { String($0) }
        }
        let rawHost: String
        if let h = hostValue {
            rawHost = h
        } else if let authority = target.authority, head.version.minor == 0 {
            rawHost = authority
        } else {
            return .reject(.hostMissing, requestID: id, route: nil, close: declaresBody)
        }
        let host: String
        switch HostNormalizer.normalize(rawHost) {
        case .success(let h): host = h
        case .failure(let reason): return .reject(reason, requestID: id, route: nil, close: declaresBody)
        }
        if let authority = target.authority {
            guard case .success(let authorityHost) = HostNormalizer.normalize(authority), authorityHost == host else {
                return .reject(.hostMismatch, requestID: id, route: nil, close: declaresBody)
            }
        }
        // TLS: the certificate was chosen for the SNI name; a request for another host is misdirected.
        if let sni = connection.tls?.serverName, sni != host {
            return .reject(.misdirectedRequest, requestID: id, route: nil, close: declaresBody)
        }

        // Route.
        guard let route = snapshot.route(listener: connection.listener.name, host: host, path: target.path) else {
            return .reject(.routeNotFound, requestID: id, route: nil, close: declaresBody)
        }
        if case .length(let length) = framing, length > route.config.maxRequestBodyBytes {
            return .reject(.bodyTooLarge, requestID: id, route: route.name, close: true)
        }

        // Expect.
        var expectContinue = false
        let expectations = head.headers[canonicalForm: "expect"]
        if !expectations.isEmpty {
            guard expectations.count == 1, expectations[0].lowercased() == "100-continue" else {
                return .reject(.expectationFailed, requestID: id, route: route.name, close: declaresBody)
            }
            expectContinue = head.version.minor >= 1 && framing.hasBody
        }

        // The real client address: the TCP peer, or from a trusted proxy's X-Forwarded-For.
        let clientAddress = realClientAddress(head: head, connection: connection)

        // The upstream head.
        var upstream = HTTPRequestHead(
            version: .http1_1,
            method: head.method,
            uri: route.upstreamPath(for: target.path) + (target.query.map { "?" + $0 } ?? "")
        )
        // The client's headers plus the five added below, in one allocation.
        upstream.headers.reserveCapacity(head.headers.count + 5)
        let listed = HeaderSanitizer.connectionTokens(head.headers)
        let stripAuthorization = route.config.auth != nil && !route.config.forwardToken
        // A token header configured on the route is a credential too.
        let tokenHeader = stripAuthorization ? route.config.auth?.tokenHeader.map(HeaderSanitizer.canonicalName) : nil
        var requestedUpgrade = false
        var forwardedFor: [String] = []
        var forwardedProto: String? = nil
        var forwardedHost: String? = nil
        for (name, value) in head.headers {
            let canonical = HeaderSanitizer.canonicalName(name)
            switch canonical {
            case "host", "content-length", "transfer-encoding", "expect", "x-request-id", "via":
                continue
            case "upgrade":
                requestedUpgrade = true
                continue
            case "x-forwarded-for":
                if connection.peerIsTrusted { forwardedFor.append(value) }
                continue
            case "x-forwarded-proto":
                if connection.peerIsTrusted, forwardedProto == nil { forwardedProto = value }
                continue
            case "x-forwarded-host":
                if connection.peerIsTrusted, forwardedHost == nil { forwardedHost = value }
                continue
            case "forwarded", "x-real-ip":
                if connection.peerIsTrusted { upstream.headers.add(name: name, value: value) }
                continue
            case "authorization":
                if stripAuthorization { continue }
            default:
                break
            }
            if HeaderSanitizer.hopByHop.contains(canonical) || listed.contains(canonical)
                || listed.contains(name.lowercased())
            {
                continue
            }
            if HeaderSanitizer.isReserved(canonical) || route.strippedHeaderNames.contains(canonical)
                || canonical == tokenHeader
            {
                continue
            }
            upstream.headers.add(name: name, value: value)
        }
        if stripAuthorization, let cookie = route.config.auth?.tokenCookie {
            BearerTokenSource.removingCookie(named: cookie, from: &upstream.headers)
        }
        upstream.headers.add(name: "host", value: route.config.preserveHost ? rawHost : route.upstreamAuthority)
        switch framing {
        case .none:
            if head.method == .POST || head.method == .PUT || head.method == .PATCH {
                upstream.headers.add(name: "content-length", value: "0")
            }
        case .length(let length): upstream.headers.add(name: "content-length", value: String(length))
        case .chunked: upstream.headers.add(name: "transfer-encoding", value: "chunked")
        }
        // The common case (no trusted proxy in front) without an array and a join.
        if forwardedFor.isEmpty {
            upstream.headers.add(name: "x-forwarded-for", value: connection.peerDescription)
        } else {
            forwardedFor.append(connection.peerDescription)
            upstream.headers.add(name: "x-forwarded-for", value: forwardedFor.joined(separator: ", "))
        }
        upstream.headers.add(name: "x-forwarded-proto", value: forwardedProto ?? connection.scheme)
        upstream.headers.add(name: "x-forwarded-host", value: forwardedHost ?? rawHost)
        upstream.headers.add(name: "x-request-id", value: id)
        upstream.headers.add(name: "via", value: "1.1 portcullis")

        let facts = RequestFacts(
            listener: connection.listener.name,
            method: head.method.rawValue,
            host: host,
            path: target.path,
            clientAddress: clientAddress,
            time: WallClock.nowSeconds()
        )
        return .forward(
            PreparedRequest(
                route: route,
                requestID: id,
                facts: facts,
                upstreamHead: upstream,
                clientVersion: head.version,
                clientKeepAlive: head.isKeepAlive,
                expectContinue: expectContinue,
                framing: framing,
                isIdempotent: isIdempotent(head.method),
                requestedUpgrade: requestedUpgrade,
                clientHead: head
            )
        )
    }

    static func upstreamAuthority(_ route: RouteConfig) -> String {
        let endpoint = route.upstream.endpoints[0]
        let defaultPort = route.upstream.scheme == .https ? 443 : 80
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
        return endpoint.port == defaultPort ? host : "\(host):\(endpoint.port)"
    }

    /// The client address policy and logs see: the TCP peer, unless the peer is a trusted proxy, in which
    /// case the right-most X-Forwarded-For entry that is not itself a trusted proxy.
    static func realClientAddress(head: HTTPRequestHead, connection: ConnectionInfo) -> IPAddress? {
        guard connection.peerIsTrusted else { return connection.peer }
        var entries: [Substring] = []
        for value in head.headers[canonicalForm: "x-forwarded-for"] {
            for part in value.split(separator: ",") { entries.append(part.trimmingASCIISpaces()) }
        }
        var candidate = connection.peer
        for entry in entries.reversed() {
            guard let ip = IPAddress.parse(String(entry)) else { break }
            candidate = ip
            if !connection.listener.trustedProxies.contains(where: { $0.contains(ip) }) { break }
        }
        return candidate
    }
}
