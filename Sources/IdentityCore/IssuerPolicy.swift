/// What one issuer's tokens must satisfy. Built from configuration by the caller, once per reload.
public struct IssuerPolicy: Sendable, Hashable {
    /// The exact `iss` value (no normalization: a trailing slash is a different issuer).
    public var issuer: String
    /// The allow-list. A token whose `alg` is not in it is refused, whatever key it names.
    public var algorithms: Set<JWSAlgorithm>
    /// Seconds of tolerance for `exp`, `nbf` and `iat`. Negative values count as 0.
    public var clockSkew: Int64
    /// Claim holding the groups: an array of strings or a single string. A top-level claim of this
    /// exact name wins; otherwise a dotted name is a path into nested objects (`realm_access.roles`).
    public var groupsClaim: String
    /// Claim holding the e-mail address (a string), looked up like ``groupsClaim``.
    public var emailClaim: String
    /// When set, the `typ` header must equal it, case-insensitively and with an `application/`
    /// prefix tolerated on either side (RFC 7515 section 4.1.9): `at+jwt` matches `application/at+JWT`.
    public var requiredType: String?
    /// Tokens longer than this (in bytes) are refused before anything else is done with them.
    public var maxTokenBytes: Int

    public init(
        issuer: String,
        algorithms: Set<JWSAlgorithm> = JWSAlgorithm.defaultAllowed,
        clockSkew: Int64 = 60,
        groupsClaim: String = "groups",
        emailClaim: String = "email",
        requiredType: String? = nil,
        maxTokenBytes: Int = 8192
    ) {
        self.issuer = issuer
        self.algorithms = algorithms
        self.clockSkew = clockSkew
        self.groupsClaim = groupsClaim
        self.emailClaim = emailClaim
        self.requiredType = requiredType
        self.maxTokenBytes = maxTokenBytes
    }
}
