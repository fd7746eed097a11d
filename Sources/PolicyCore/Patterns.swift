import ProxyModel

/// The host part of a route match.
public enum HostPattern: Sendable, Hashable, CustomStringConvertible {
    /// No host given: matches every host (least specific).
    case any
    /// `airflow.example.com` (stored normalized: lowercase, no trailing dot).
    case exact(String)
    /// `*.internal.example.com`: one or more labels in front of the suffix; stored as the suffix
    /// with its leading dot (`.internal.example.com`). Does not match the bare suffix.
    case wildcard(suffix: String)

    /// Parses a host pattern from the policy file. Returns a message on error
    /// (for example `*` in the middle, an empty label, a port).
    public static func parse(_ text: String) -> Result<HostPattern, PatternError> { _parseHostPattern(text) }

    public var description: String { _describeHostPattern(self) }
}

/// The path part of a route match.
public enum PathPattern: Sendable, Hashable, CustomStringConvertible {
    /// `/healthz`: exactly this normalized path.
    case exact(String)
    /// `/admin/*`: `/admin` itself and everything below it. Stored without the `/*`
    /// (`/admin`); `/*` is stored as the empty prefix and matches every path.
    case prefix(String)

    /// Parses a path pattern. The text must start with `/`, be already normalized
    /// (``PathNormalizer/normalizePath(_:)`` leaves it unchanged) and may end in `/*`; `*` elsewhere is an error.
    public static func parse(_ text: String) -> Result<PathPattern, PatternError> { _parsePathPattern(text) }

    public func matches(_ path: String) -> Bool { _pathPatternMatches(self, path) }

    public var description: String { _describePathPattern(self) }
}

public struct PatternError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { self.message }
}

/// Route lookup over compiled patterns (DESIGN.md "Routing"):
/// among the routes whose host and path both match, the most specific host wins (exact, then the
/// longest wildcard suffix, then no host); within that host the longest path wins, exact before
/// prefix at equal length. Lookup cost grows with the number of labels in the host and segments in
/// the path, not with the number of routes.
public struct RouteTable<Payload: Sendable>: Sendable {
    public struct Entry: Sendable {
        public var host: HostPattern
        public var path: PathPattern
        public var payload: Payload
        public init(host: HostPattern, path: PathPattern, payload: Payload) {
            self.host = host
            self.path = path
            self.payload = payload
        }
    }

    @usableFromInline var storage: _RouteTableStorage
    /// The entries' payloads, in entry order: the storage finds the index.
    @usableFromInline var payloads: [Payload]

    /// Later duplicates of the same (host, path) pair are ignored; config validation reports them.
    public init(_ entries: [Entry]) {
        self.storage = _RouteTableStorage(entries.map { ($0.host, $0.path) })
        self.payloads = entries.map(\.payload)
    }

    /// `host` must be normalized (``HostNormalizer``), `path` normalized (``PathNormalizer``).
    @inlinable
    public func lookup(host: String, path: String) -> Payload? {
        guard let index = self.storage.lookup(host: host, path: path) else { return nil }
        return self.payloads[index]
    }
}
