/// The vocabulary of reasons the proxy gives for refusing or failing a request.
///
/// Defined once, here: error bodies, logs and (later) audit events all use these codes.
/// A code is a stable machine-readable string; its status is the HTTP status it is answered with.
public struct ReasonCode: Hashable, Sendable, CustomStringConvertible {
    public let code: String
    /// The HTTP status this reason is answered with when it ends a request.
    public let status: Int

    public init(_ code: String, status: Int) {
        self.code = code
        self.status = status
    }

    public var description: String { self.code }

    public static func == (lhs: ReasonCode, rhs: ReasonCode) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

extension ReasonCode {
    // MARK: 400: the request itself is malformed or ambiguous
    /// The HTTP/1 parser refused the bytes (bad syntax, bare LF, obs-fold, bad chunk size, ...).
    public static let malformedRequest = ReasonCode("malformed_request", status: 400)
    /// Content-Length together with Transfer-Encoding, or several differing Content-Length values.
    public static let ambiguousFraming = ReasonCode("ambiguous_framing", status: 400)
    /// A Transfer-Encoding other than exactly `chunked`.
    public static let unsupportedTransferEncoding = ReasonCode("unsupported_transfer_encoding", status: 400)
    public static let pathEncodedSlash = ReasonCode("path_encoded_slash", status: 400)
    public static let pathBackslash = ReasonCode("path_backslash", status: 400)
    public static let pathControlCharacter = ReasonCode("path_control_character", status: 400)
    public static let pathParameter = ReasonCode("path_parameter", status: 400)
    public static let pathNonASCII = ReasonCode("path_non_ascii", status: 400)
    public static let pathInvalidUTF8 = ReasonCode("path_invalid_utf8", status: 400)
    public static let pathMalformedEscape = ReasonCode("path_malformed_escape", status: 400)
    public static let pathAboveRoot = ReasonCode("path_above_root", status: 400)
    public static let pathFragment = ReasonCode("path_fragment", status: 400)
    public static let pathInvalidCharacter = ReasonCode("path_invalid_character", status: 400)
    public static let queryInvalidCharacter = ReasonCode("query_invalid_character", status: 400)
    /// A request target that is neither origin-form nor a usable absolute-form (`*`, authority-form, ...).
    public static let unsupportedTargetForm = ReasonCode("unsupported_target_form", status: 400)
    public static let hostMissing = ReasonCode("host_missing", status: 400)
    public static let hostInvalid = ReasonCode("host_invalid", status: 400)
    /// Several Host headers, or an absolute-form target whose authority disagrees with Host.
    public static let hostMismatch = ReasonCode("host_mismatch", status: 400)
    /// A client-supplied header value that can not be forwarded safely.
    public static let headerInvalid = ReasonCode("header_invalid", status: 400)

    // MARK: 4xx: limits and routing
    public static let requestTimeout = ReasonCode("request_timeout", status: 408)
    public static let headersTooLarge = ReasonCode("headers_too_large", status: 431)
    public static let bodyTooLarge = ReasonCode("body_too_large", status: 413)
    public static let expectationFailed = ReasonCode("expectation_failed", status: 417)
    public static let routeNotFound = ReasonCode("route_not_found", status: 404)
    /// TLS: the Host header names a different server than SNI did.
    public static let misdirectedRequest = ReasonCode("misdirected_request", status: 421)
    public static let httpVersionNotSupported = ReasonCode("http_version_not_supported", status: 505)

    // MARK: identity and policy
    /// The route requires an identity and the request carries none that is valid.
    public static let unauthenticated = ReasonCode("unauthenticated", status: 401)
    /// Bearer token problems (all 401, RFC 6750 `invalid_token`); the token itself is never echoed.
    public static let tokenMalformed = ReasonCode("token_malformed", status: 401)
    public static let tokenTooLarge = ReasonCode("token_too_large", status: 401)
    public static let tokenAlgorithmNotAllowed = ReasonCode("token_algorithm_not_allowed", status: 401)
    public static let tokenSignatureInvalid = ReasonCode("token_signature_invalid", status: 401)
    public static let tokenUnknownKey = ReasonCode("token_unknown_key", status: 401)
    public static let tokenExpired = ReasonCode("token_expired", status: 401)
    public static let tokenNotYetValid = ReasonCode("token_not_yet_valid", status: 401)
    public static let tokenIssuedInFuture = ReasonCode("token_issued_in_future", status: 401)
    public static let tokenIssuerNotAccepted = ReasonCode("token_issuer_not_accepted", status: 401)
    public static let tokenAudienceMismatch = ReasonCode("token_audience_mismatch", status: 401)
    public static let tokenMissingClaim = ReasonCode("token_missing_claim", status: 401)
    public static let tokenTypeMismatch = ReasonCode("token_type_mismatch", status: 401)
    public static let tokenCriticalHeader = ReasonCode("token_critical_header", status: 401)
    /// A client certificate is required by the route and none (valid) was presented.
    public static let clientCertificateRequired = ReasonCode("client_certificate_required", status: 401)
    /// The issuer's keys were never loaded: fail closed (with Retry-After).
    public static let issuerKeysUnavailable = ReasonCode("issuer_keys_unavailable", status: 503)
    /// A rule said deny.
    public static let deniedByRule = ReasonCode("denied_by_rule", status: 403)
    /// No rule allowed the request (default deny).
    public static let noRuleMatched = ReasonCode("no_rule_matched", status: 403)

    // MARK: 5xx: upstream and the proxy itself
    /// Connection to the upstream refused, reset, or closed before a complete response.
    public static let upstreamUnavailable = ReasonCode("upstream_unavailable", status: 502)
    /// The upstream sent something that is not a valid HTTP/1.1 response.
    public static let upstreamProtocolError = ReasonCode("upstream_protocol_error", status: 502)
    public static let upstreamConnectTimeout = ReasonCode("upstream_connect_timeout", status: 504)
    public static let upstreamTimeout = ReasonCode("upstream_timeout", status: 504)
    /// Every pooled connection to the upstream is busy and the wait queue is full or timed out.
    public static let upstreamPoolExhausted = ReasonCode("upstream_pool_exhausted", status: 503)
    public static let shuttingDown = ReasonCode("shutting_down", status: 503)
    /// The audit buffer is full (`on_overflow: fail_closed`): no request goes unrecorded.
    public static let auditUnavailable = ReasonCode("audit_unavailable", status: 503)
    public static let internalError = ReasonCode("internal_error", status: 500)

    /// Every code, for documentation and tests.
    public static let all: [ReasonCode] = [
        .malformedRequest, .ambiguousFraming, .unsupportedTransferEncoding, .pathEncodedSlash, .pathBackslash,
        .pathControlCharacter, .pathParameter, .pathNonASCII, .pathInvalidUTF8, .pathMalformedEscape,
        .pathAboveRoot, .pathFragment, .pathInvalidCharacter, .queryInvalidCharacter, .unsupportedTargetForm,
        .hostMissing, .hostInvalid, .hostMismatch, .headerInvalid, .requestTimeout, .headersTooLarge,
        .bodyTooLarge, .expectationFailed, .routeNotFound, .misdirectedRequest, .httpVersionNotSupported,
        .unauthenticated, .tokenMalformed, .tokenTooLarge, .tokenAlgorithmNotAllowed, .tokenSignatureInvalid,
        .tokenUnknownKey, .tokenExpired, .tokenNotYetValid, .tokenIssuedInFuture, .tokenIssuerNotAccepted,
        .tokenAudienceMismatch, .tokenMissingClaim, .tokenTypeMismatch, .tokenCriticalHeader,
        .clientCertificateRequired, .issuerKeysUnavailable, .deniedByRule, .noRuleMatched, .upstreamUnavailable, .upstreamProtocolError,
        .upstreamConnectTimeout, .upstreamTimeout, .upstreamPoolExhausted, .shuttingDown, .auditUnavailable, .internalError,
    ]
}
