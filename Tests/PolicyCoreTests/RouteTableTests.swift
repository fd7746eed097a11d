import PolicyCore
import Testing

@Suite("Route table")
struct RouteTableTests {
    private static func entry(_ host: String?, _ path: String, _ name: String) -> RouteTable<String>.Entry {
        let hostPattern: HostPattern
        if let host {
            guard case .success(let parsed) = HostPattern.parse(host) else { fatalError("bad host \(host)") }
            hostPattern = parsed
        } else {
            hostPattern = .any
        }
        guard case .success(let pathPattern) = PathPattern.parse(path) else { fatalError("bad path \(path)") }
        return RouteTable.Entry(host: hostPattern, path: pathPattern, payload: name)
    }

    /// A table exercising every precedence rule; entries are deliberately listed least specific
    /// first so that insertion order can not be what makes the tests pass.
    static let table = RouteTable<String>([
        entry(nil, "/*", "any-all"),
        entry(nil, "/healthz", "any-healthz"),
        entry(nil, "/static/*", "any-static"),
        entry("*.com", "/*", "com-all"),
        entry("*.example.com", "/*", "example-all"),
        entry("*.example.com", "/api/*", "example-api"),
        entry("*.internal.example.com", "/jobs/*", "internal-jobs"),
        entry("airflow.example.com", "/*", "airflow-all"),
        entry("airflow.example.com", "/admin/*", "airflow-admin-prefix"),
        entry("airflow.example.com", "/admin", "airflow-admin-exact"),
        entry("airflow.example.com", "/admin/users/*", "airflow-admin-users"),
        entry("only-exact.example.com", "/login", "only-exact-login"),
        entry("only-prefix.example.org", "/app/*", "only-prefix-app"),
    ])

    @Test(
        "lookups",
        arguments: [
            // exact host, longest path prefix, exact before prefix at equal length
            ("airflow.example.com", "/", "airflow-all"),
            ("airflow.example.com", "/dags", "airflow-all"),
            ("airflow.example.com", "/admin", "airflow-admin-exact"),
            ("airflow.example.com", "/admin/", "airflow-admin-prefix"),
            ("airflow.example.com", "/admin/x", "airflow-admin-prefix"),
            ("airflow.example.com", "/administrator", "airflow-all"),
            ("airflow.example.com", "/admin/users", "airflow-admin-users"),
            ("airflow.example.com", "/admin/users/42/edit", "airflow-admin-users"),
            ("airflow.example.com", "/admin/usersx", "airflow-admin-prefix"),
            // an exact host wins over a wildcard even when the wildcard has a longer path
            ("airflow.example.com", "/api/v1/dags", "airflow-all"),
            // exact host without a matching path falls back to the wildcard, then to no host
            ("only-exact.example.com", "/login", "only-exact-login"),
            ("only-exact.example.com", "/other", "example-all"),
            ("only-prefix.example.org", "/app", "only-prefix-app"),
            ("only-prefix.example.org", "/app/x", "only-prefix-app"),
            ("only-prefix.example.org", "/apple", "any-all"),
            ("only-prefix.example.org", "/static/x.css", "any-static"),
            // longest wildcard suffix first
            ("w1.internal.example.com", "/jobs/7", "internal-jobs"),
            ("w1.internal.example.com", "/jobs", "internal-jobs"),
            ("w1.internal.example.com", "/api/x", "example-api"),
            ("w1.internal.example.com", "/other", "example-all"),
            ("deep.w1.internal.example.com", "/jobs/7", "internal-jobs"),
            ("x.example.com", "/api", "example-api"),
            ("x.example.com", "/apix", "example-all"),
            ("example.org.com", "/x", "com-all"),
            // a wildcard does not match its bare suffix
            ("internal.example.com", "/jobs/7", "example-all"),
            ("example.com", "/x", "com-all"),
            // no host pattern matches
            ("other.org", "/", "any-all"),
            ("other.org", "/healthz", "any-healthz"),
            ("other.org", "/healthz/x", "any-all"),
            ("other.org", "/static", "any-static"),
            ("com", "/static/a/b", "any-static"),
        ]
    )
    func lookups(_ host: String, _ path: String, _ expected: String) {
        #expect(Self.table.lookup(host: host, path: path) == expected)
    }

    @Test func noMatchIsNil() {
        let table = RouteTable<String>([
            Self.entry("a.example.com", "/x/*", "a-x"),
            Self.entry("*.example.com", "/y", "wild-y"),
            Self.entry(nil, "/z", "any-z"),
        ])
        #expect(table.lookup(host: "a.example.com", path: "/x/1") == "a-x")
        #expect(table.lookup(host: "a.example.com", path: "/y") == "wild-y")
        #expect(table.lookup(host: "a.example.com", path: "/z") == "any-z")
        #expect(table.lookup(host: "a.example.com", path: "/w") == nil)
        #expect(table.lookup(host: "example.com", path: "/y") == nil)
        #expect(table.lookup(host: "b.example.com", path: "/x/1") == nil)
        #expect(RouteTable<String>([]).lookup(host: "a", path: "/") == nil)
    }

    @Test func firstEntryWinsOnDuplicates() {
        let table = RouteTable<String>([
            Self.entry("a.example.com", "/x/*", "first-prefix"),
            Self.entry("a.example.com", "/x/*", "second-prefix"),
            Self.entry("a.example.com", "/x", "first-exact"),
            Self.entry("a.example.com", "/x", "second-exact"),
            Self.entry("*.example.com", "/*", "first-wild"),
            Self.entry("*.example.com", "/*", "second-wild"),
            Self.entry(nil, "/*", "first-any"),
            Self.entry(nil, "/*", "second-any"),
        ])
        #expect(table.lookup(host: "a.example.com", path: "/x/1") == "first-prefix")
        #expect(table.lookup(host: "a.example.com", path: "/x") == "first-exact")
        #expect(table.lookup(host: "b.example.com", path: "/x") == "first-wild")
        #expect(table.lookup(host: "other", path: "/x") == "first-any")
    }

    @Test func rootPrefixAndRootExact() {
        let table = RouteTable<String>([
            Self.entry("h", "/", "root-exact"),
            Self.entry("h", "/*", "root-prefix"),
        ])
        #expect(table.lookup(host: "h", path: "/") == "root-exact")
        #expect(table.lookup(host: "h", path: "/a") == "root-prefix")
        #expect(table.lookup(host: "h", path: "/a/b/") == "root-prefix")
    }

    /// The lookup must agree with the definition: among matching entries, the most specific host,
    /// then the longest path, exact before prefix.
    @Test func fiveThousandRoutes() {
        var entries: [RouteTable<Int>.Entry] = []
        var id = 0
        func add(_ host: HostPattern, _ path: PathPattern) {
            entries.append(RouteTable.Entry(host: host, path: path, payload: id))
            id += 1
        }
        // 1000 exact hosts with 3 routes each, 300 wildcard suffixes with 5 routes each,
        // 500 host-less routes: 5000 in all.
        for h in 0..<1000 {
            let host = HostPattern.exact("svc\(h).team\(h % 50).example.com")
            add(host, .exact("/status"))
            add(host, .prefix("/api"))
            add(host, .prefix("/api/v\(h % 3)"))
        }
        for w in 0..<300 {
            let suffix: HostPattern =
                w < 50 ? .wildcard(suffix: ".team\(w).example.com") : .wildcard(suffix: ".zone\(w).example.com")
            add(suffix, .prefix("/api/admin"))
            add(suffix, .exact("/team"))
            add(suffix, .prefix("/w\(w)"))
            add(suffix, .prefix("/shared/\(w % 7)"))
            add(suffix, w % 2 == 0 ? .prefix("") : .exact("/odd"))
        }
        for a in 0..<499 {
            add(.any, .prefix("/global/\(a)"))
        }
        add(.any, .exact("/healthz"))
        #expect(entries.count == 5000)

        let table = RouteTable(entries)

        func hostMatches(_ pattern: HostPattern, _ host: String) -> Bool {
            switch pattern {
            case .any: return true
            case .exact(let exact): return exact == host
            case .wildcard(let suffix): return host.hasSuffix(suffix) && host.count > suffix.count
            }
        }
        func hostRank(_ pattern: HostPattern) -> Int {
            switch pattern {
            case .exact: return Int.max
            case .wildcard(let suffix): return suffix.count
            case .any: return -1
            }
        }
        // The reference answer by a linear scan, used only to check the index.
        func reference(_ host: String, _ path: String) -> Int? {
            var best: (hostRank: Int, pathLength: Int, isExact: Bool, payload: Int)? = nil
            for entry in entries where hostMatches(entry.host, host) && entry.path.matches(path) {
                let rank = hostRank(entry.host)
                let (length, isExact): (Int, Bool)
                switch entry.path {
                case .exact(let p): (length, isExact) = (p.count, true)
                case .prefix(let p): (length, isExact) = (p.count, false)
                }
                if let current = best {
                    // most specific host first, then the longest path, then exact before prefix
                    if rank < current.hostRank { continue }
                    if rank == current.hostRank {
                        if length < current.pathLength { continue }
                        if length == current.pathLength && (!isExact || current.isExact) { continue }
                    }
                }
                best = (rank, length, isExact, entry.payload)
            }
            return best?.payload
        }

        let hosts = [
            "svc0.team0.example.com", "svc7.team7.example.com", "svc999.team49.example.com", "other.team3.example.com",
            "a.b.team3.example.com", "x.zone120.example.com", "x.zone121.example.com", "team3.example.com",
            "zone120.example.com", "unknown.example.org", "svc1000.team0.example.com",
        ]
        let paths = [
            "/", "/status", "/status/x", "/api", "/api/", "/api/v0", "/api/v1/x", "/api/v2/y/z", "/api/admin",
            "/api/admin/users", "/team", "/team/x", "/w3", "/w120/a", "/w121", "/shared/3/x", "/shared/4", "/odd",
            "/global/0", "/global/498/x", "/global/499", "/healthz", "/healthz/x", "/nothing",
        ]
        var checked = 0
        var found = 0
        for host in hosts {
            for path in paths {
                let expected = reference(host, path)
                #expect(table.lookup(host: host, path: path) == expected, "\(host) \(path)")
                checked += 1
                if expected != nil { found += 1 }
            }
        }
        #expect(checked == hosts.count * paths.count)
        // Make sure the sample exercises both hits and misses.
        #expect(found > checked / 2)
        #expect(found < checked)

        // A few answers spelled out, so that the reference itself is checked too.
        #expect(table.lookup(host: "svc7.team7.example.com", path: "/api/v1/x") == 7 * 3 + 2)
        #expect(table.lookup(host: "svc7.team7.example.com", path: "/api/v2/x") == 7 * 3 + 1)
        #expect(table.lookup(host: "svc7.team7.example.com", path: "/team") == 3000 + 7 * 5 + 1)
        #expect(table.lookup(host: "x.zone120.example.com", path: "/nothing") == 3000 + 120 * 5 + 4)
        #expect(table.lookup(host: "x.zone121.example.com", path: "/nothing") == nil)
        #expect(table.lookup(host: "x.zone121.example.com", path: "/global/5/a") == 4500 + 5)
        #expect(table.lookup(host: "unknown.example.org", path: "/healthz") == 4999)
    }
}
