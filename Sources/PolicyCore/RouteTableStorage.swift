// Route lookup by hashing, never by scanning the routes (DESIGN.md "Routing").
//
// Routes are bucketed by host pattern: one path index per exact host, one per wildcard suffix and
// one for routes without a host. A lookup tries the buckets from the most to the least specific
// host, and the first bucket with a matching path wins. Inside a bucket the path is tried whole
// (exact routes, then prefix routes), then cut back at each `/`, longest first. Keys are
// `Substring`s so that the candidates cut out of the request's host and path need no allocation.
//
// The storage is not generic: it maps to the index of the entry, and ``RouteTable`` holds the payloads.
// A generic storage would be called unspecialized from other modules, with every dictionary probe going
// through witness tables and generic metadata looked up at run time.

@usableFromInline
struct _RouteTableStorage: Sendable {
    private var exactHosts: [Substring: PathIndex] = [:]
    private var wildcardSuffixes: [Substring: PathIndex] = [:]
    private var anyHost = PathIndex()

    init(_ entries: [(host: HostPattern, path: PathPattern)]) {
        for (payload, entry) in entries.enumerated() {
            switch entry.host {
            case .any:
                self.anyHost.insert(entry.path, payload)
            case .exact(let host):
                self.exactHosts[Substring(host), default: PathIndex()].insert(entry.path, payload)
            case .wildcard(let suffix):
                self.wildcardSuffixes[Substring(suffix), default: PathIndex()].insert(entry.path, payload)
            }
        }
    }

    /// The index of the entry that routes `host` and `path`.
    @usableFromInline
    func lookup(host: String, path: String) -> Int? {
        let path = Substring(path)
        let host = Substring(host)

        if let index = self.exactHosts[host], let payload = index.lookup(path) {
            return payload
        }

        if !self.wildcardSuffixes.isEmpty {
            // `a.b.c.com` tries `.b.c.com`, `.c.com`, `.com`: longest suffix first. A wildcard needs
            // at least one label in front, so a cut at the very first byte is never tried.
            let utf8 = host.utf8
            var position = utf8.startIndex
            while position < utf8.endIndex {
                if utf8[position] == UInt8(ascii: "."), position > utf8.startIndex,
                    let index = self.wildcardSuffixes[host[position...]], let payload = index.lookup(path)
                {
                    return payload
                }
                position = utf8.index(after: position)
            }
        }

        return self.anyHost.lookup(path)
    }
}

/// The path routes of one host bucket.
struct PathIndex: Sendable {
    private var exact: [Substring: Int] = [:]
    /// Keyed by the prefix without `/*`; `/*` is the empty key.
    private var prefixes: [Substring: Int] = [:]

    init() {}

    /// The first entry for a pattern wins; later duplicates are ignored.
    mutating func insert(_ pattern: PathPattern, _ payload: Int) {
        switch pattern {
        case .exact(let path):
            if self.exact.index(forKey: Substring(path)) == nil { self.exact[Substring(path)] = payload }
        case .prefix(let prefix):
            if self.prefixes.index(forKey: Substring(prefix)) == nil { self.prefixes[Substring(prefix)] = payload }
        }
    }

    func lookup(_ path: Substring) -> Int? {
        if !self.exact.isEmpty, let payload = self.exact[path] {
            return payload
        }
        guard !self.prefixes.isEmpty else { return nil }
        if let payload = self.prefixes[path] {
            return payload
        }
        // For `/a/b/c`: `/a/b`, `/a`, then the empty prefix (`/*`).
        let utf8 = path.utf8
        var position = utf8.endIndex
        while position > utf8.startIndex {
            position = utf8.index(before: position)
            if utf8[position] == UInt8(ascii: "/"), let payload = self.prefixes[path[..<position]] {
                return payload
            }
        }
        // A path that does not start with `/` (not normalized) is still covered by `/*`.
        if utf8.first != UInt8(ascii: "/"), !path.isEmpty, let payload = self.prefixes[""] {
            return payload
        }
        return nil
    }
}
