/// A request target after normalization (DESIGN.md "Normalization"): the one form used for routing,
/// policy and forwarding.
public struct RequestTarget: Sendable, Equatable {
    /// For an absolute-form target (`http://host:port/path`), its authority exactly as sent (host and port).
    public var authority: String?
    /// The normalized path: starts with `/`, no dot-segments, no `//`, unreserved escapes decoded,
    /// other escapes upper-case.
    public var path: String
    /// The query without its `?`, exactly as sent (validated: printable ASCII only); nil when absent.
    public var query: String?

    public init(authority: String? = nil, path: String, query: String? = nil) {
        self.authority = authority
        self.path = path
        self.query = query
    }

    /// Path plus `?query` when present: what the upstream receives.
    public var pathAndQuery: String {
        if let query = self.query { return self.path + "?" + query }
        return self.path
    }
}

/// Normalization of request targets and paths. Pure functions; see DESIGN.md for the rules.
public enum PathNormalizer {
    /// Parses and normalizes a request target as received on the request line
    /// (origin-form or absolute-form with scheme http/https).
    /// Anything ambiguous is refused with the reason (all reasons here answer 400).
    public static func normalizeTarget(_ target: String) -> Result<RequestTarget, ReasonCode> {
        _normalizeTarget(target)
    }

    /// Normalizes an origin-form path without query (used by config checks and tools).
    public static func normalizePath(_ path: String) -> Result<String, ReasonCode> {
        _normalizePath(path)
    }
}

/// Host header normalization: lowercased, port and a trailing dot removed.
public enum HostNormalizer {
    /// `Example.COM.:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
    /// Refuses (``ReasonCode/hostInvalid``) empty hosts, bad ports, userinfo, and characters outside
    /// letters, digits, `-`, `.`, `_` (and hex digits/colons inside brackets for IPv6 literals).
    public static func normalize(_ host: String) -> Result<String, ReasonCode> {
        _normalizeHost(host)
    }
}
