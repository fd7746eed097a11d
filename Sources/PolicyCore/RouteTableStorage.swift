// Route lookup by hashing, never by scanning the routes (DESIGN.md "Routing").
//
// Routes are bucketed by host pattern: one path index per exact host, one per wildcard suffix and
// one for routes without a host. A lookup tries the buckets from the most to the least specific
// host, and the first bucket with a matching path wins. Inside a bucket the path is tried whole
// (exact routes, then prefix routes), then cut back at each `/`, longest first. Keys are
// `Substring`s so that the candidates cut out of the request's host and path need no allocation.

@usableFromInline
struct _RouteTableStorage<Payload: Sendable>: Sendable {
    private var exactHosts: [Substring: PathIndex<Payload>] = [:]
    private var wildcardSuffixes: [Substring: PathIndex<Payload>] = [:]
    private var anyHost = PathIndex<Payload>()

    init(_ entries: [RouteTable<Payload>.Entry]) {
        for entry in entries {
            switch entry.host {
            case .any:
                self.anyHost.insert(entry.path, entry.payload)
            case .exact(let host):
                self.exactHosts[Substring(host), default: PathIndex()].insert(entry.path, entry.payload)
            case .wildcard(let suffix):
                self.wildcardSuffixes[Substring(suffix), default: PathIndex()].insert(entry.path, entry.payload)
            }
        }
    }

    func lookup(host: String, path: String) -> Payload? {
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
struct PathIndex<Payload: Sendable>: Sendable {
    private var exact: [Substring: Payload] = [:]
    /// Keyed by the prefix without `/*`; `/*` is the empty key.
    private var prefixes: [Substring: Payload] = [:]

    init() {}

    /// The first entry for a pattern wins; later duplicates are ignored.
    mutating func insert(_ pattern: PathPattern, _ payload: Payload) {
        switch pattern {
        case .exact(let path):
            if self.exact.index(forKey: Substring(path)) == nil { self.exact[Substring(path)] = payload }
        case .prefix(let prefix):
            if self.prefixes.index(forKey: Substring(prefix)) == nil { self.prefixes[Substring(prefix)] = payload }
        }
    }

    func lookup(_ path: Substring) -> Payload? {
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
