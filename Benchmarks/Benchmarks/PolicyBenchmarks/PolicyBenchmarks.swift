// Micro-benchmarks for route lookup and rule evaluation (PolicyCore), outside CI.
//
// Route lookup must not grow with the number of routes: the same fixed set of requests is looked
// up in tables of 50, 500 and 5,000 routes (50 rules each). Host ids are zero-padded, so every
// request has the same length and shape at every size; the hit requests name services spread over
// the whole table (first, a third, two thirds, last), not only the first few.
//
// Each iteration runs 1,000 lookups (evaluations), one per scaled iteration, so the rows marked `*`
// in the output (time, mallocs) are per lookup; `--scale` shows them per 1,000 instead (README.md).

import Benchmark
import PolicyCore
import ProxyModel

let benchmarks: @Sendable () -> Void = {
    let microConfiguration = makeMicroConfiguration()
    let routeCounts = [50, 500, 5_000]
    for routeCount in routeCounts {
        Benchmark(
            "RouteTable.lookup \(routeCount) routes",
            configuration: microConfiguration
        ) { benchmark, fixture in
            let requests = fixture.requests
            let table = fixture.table
            // `scaledIterations` (1,000) is a multiple of the request count: every request is looked
            // up the same number of times in every iteration.
            for index in benchmark.scaledIterations {
                let request = requests[index % requests.count]
                blackHole(table.lookup(host: request.host, path: request.path))
            }
        } setup: {
            LookupFixture(routeCount: routeCount)
        }
    }

    let decidingRules: [(name: String, index: Int?)] = [
        ("rule 1 of 50", 0),
        ("rule 25 of 50", 24),
        ("rule 50 of 50", 49),
        ("no rule (default deny)", nil),
    ]
    for decidingRule in decidingRules {
        Benchmark(
            "RoutePolicy.evaluate \(decidingRule.name)",
            configuration: microConfiguration
        ) { benchmark, fixture in
            let policy = fixture.policy
            let facts = fixture.facts
            let principal = fixture.principal
            for _ in benchmark.scaledIterations {
                blackHole(policy.evaluate(facts: facts, principal: principal))
            }
        } setup: {
            EvaluationFixture(decidingRule: decidingRule.index)
        }
    }
}

/// Short runs: once built, the whole suite runs in under a minute.
func makeMicroConfiguration() -> Benchmark.Configuration {
    Benchmark.Configuration(
        // `instructions` needs a hardware PMU: absent on VMs without one (the row is then missing).
        metrics: [.wallClock, .throughput, .mallocCountTotal, .instructions],
        timeUnits: .nanoseconds,
        warmupIterations: 10,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 5_000
    )
}

// MARK: - Route lookup

/// Rules per route, as in the issue.
let rulesPerRoute = 50

struct LookupRequest {
    var host: String
    var path: String
    /// The route it must hit, as `host path` (`*.team-0001.internal.example.com /admin/*`); nil: a miss.
    var expectedRoute: String?
}

struct LookupFixture {
    var table: RouteTable<RoutePolicy>
    var requests: [LookupRequest]

    init(routeCount: Int) {
        let entries = RouteMix.entries(routeCount: routeCount)
        self.table = RouteTable(entries)
        self.requests = RouteMix.requests(groupCount: routeCount / RouteMix.routesPerGroup)
        precondition(1_000 % self.requests.count == 0, "requests must divide the 1,000 scaled iterations")
        Self.checkExpectations(entries: entries, requests: self.requests)
    }

    /// The benchmark measures what it claims: the same routes, named, send each request to the
    /// route it is meant to hit, or to none.
    private static func checkExpectations(entries: [RouteTable<RoutePolicy>.Entry], requests: [LookupRequest]) {
        let named = RouteTable(
            entries.map { RouteTable<String>.Entry(host: $0.host, path: $0.path, payload: "\($0.host) \($0.path)") }
        )
        for request in requests {
            let got = named.lookup(host: request.host, path: request.path) ?? "no route"
            let expected = request.expectedRoute ?? "no route"
            precondition(got == expected, "\(request.host)\(request.path): expected \(expected), got \(got)")
        }
    }
}

/// A deterministic route mix in groups of ten (60 % exact hosts, 30 % wildcard hosts, 10 % any host),
/// with nested path prefixes under the same host.
enum RouteMix {
    static let routesPerGroup = 10

    /// `0007`: zero-padded so that host and path lengths do not change with the table size.
    static func id(_ group: Int) -> String {
        let digits = String(group)
        return String(repeating: "0", count: max(0, 4 - digits.utf8.count)) + digits
    }

    static func exactHost(_ group: Int) -> String { "svc-\(id(group)).example.com" }
    static func wildcardSuffix(_ group: Int) -> String { ".team-\(id(group)).internal.example.com" }
    static func toolsPrefix(_ group: Int) -> String { "/tools-\(id(group))" }

    static func entries(routeCount: Int) -> [RouteTable<RoutePolicy>.Entry] {
        precondition(routeCount % routesPerGroup == 0)
        // A few shared rule templates; every route still owns its own 50-rule array.
        let templates = RulePool.routeRules(count: rulesPerRoute)
        var entries: [RouteTable<RoutePolicy>.Entry] = []
        entries.reserveCapacity(routeCount)
        for index in 0..<routeCount {
            let group = index / routesPerGroup
            let host: HostPattern
            let path: PathPattern
            switch index % routesPerGroup {
            case 0: (host, path) = (.exact(exactHost(group)), .prefix(""))
            case 1: (host, path) = (.exact(exactHost(group)), .prefix("/api"))
            case 2: (host, path) = (.exact(exactHost(group)), .prefix("/api/v1"))
            case 3: (host, path) = (.exact(exactHost(group)), .prefix("/api/v1/jobs"))
            case 4: (host, path) = (.exact(exactHost(group)), .exact("/healthz"))
            case 5: (host, path) = (.exact(exactHost(group)), .exact("/api/v1/status"))
            case 6: (host, path) = (.wildcard(suffix: wildcardSuffix(group)), .prefix(""))
            case 7: (host, path) = (.wildcard(suffix: wildcardSuffix(group)), .prefix("/admin"))
            case 8: (host, path) = (.wildcard(suffix: wildcardSuffix(group)), .prefix("/api/v1"))
            default: (host, path) = (.any, .prefix(toolsPrefix(group)))
            }
            let pathPrefix: String
            switch path {
            case .prefix(let prefix): pathPrefix = prefix
            case .exact: pathPrefix = ""
            }
            let rules = templates.map { $0 }  // a buffer of its own per route, as a loaded config has
            let policy = RoutePolicy(isPublic: false, rules: rules, pathPrefix: pathPrefix)
            entries.append(.init(host: host, path: path, payload: policy))
        }
        return entries
    }

    /// 20 requests: 8 exact-host hits, 6 wildcard hits, 2 any-host hits, 4 misses. The hits name
    /// groups spread over the table, so larger tables are not only probed at their first entries.
    static func requests(groupCount: Int) -> [LookupRequest] {
        let a = id(0)
        let b = id(groupCount / 3)
        let c = id(2 * groupCount / 3)
        let d = id(groupCount - 1)
        func hit(_ host: String, _ path: String, _ route: String) -> LookupRequest {
            LookupRequest(host: host, path: path, expectedRoute: route)
        }
        func miss(_ host: String, _ path: String) -> LookupRequest {
            LookupRequest(host: host, path: path, expectedRoute: nil)
        }
        func exact(_ group: String, _ path: String) -> String { "svc-\(group).example.com \(path)" }
        func wildcard(_ group: String, _ path: String) -> String { "*.team-\(group).internal.example.com \(path)" }
        return [
            // exact hosts
            hit("svc-\(a).example.com", "/api/v1/jobs/123/logs", exact(a, "/api/v1/jobs/*")),
            hit("svc-\(b).example.com", "/api/v1/users/42", exact(b, "/api/v1/*")),
            hit("svc-\(c).example.com", "/api/other", exact(c, "/api/*")),
            hit("svc-\(d).example.com", "/healthz", exact(d, "/healthz")),
            hit("svc-\(a).example.com", "/index.html", exact(a, "/*")),
            hit("svc-\(b).example.com", "/api/v1/status", exact(b, "/api/v1/status")),
            hit("svc-\(c).example.com", "/api/v1/jobs", exact(c, "/api/v1/jobs/*")),
            hit("svc-\(d).example.com", "/", exact(d, "/*")),
            // wildcard hosts
            hit("web.team-\(a).internal.example.com", "/admin/users/7", wildcard(a, "/admin/*")),
            hit("a.b.team-\(b).internal.example.com", "/api/v1/x", wildcard(b, "/api/v1/*")),
            hit("ci.team-\(c).internal.example.com", "/", wildcard(c, "/*")),
            hit("ci.team-\(d).internal.example.com", "/admin", wildcard(d, "/admin/*")),
            hit("x.team-\(a).internal.example.com", "/docs/guide/page", wildcard(a, "/*")),
            hit("y.team-\(b).internal.example.com", "/api/v1", wildcard(b, "/api/v1/*")),
            // any host
            hit("unknown.example.org", "/tools-\(c)/metrics/cpu", "* /tools-\(c)/*"),
            hit("10.20.30.40", "/tools-\(d)", "* /tools-\(d)/*"),
            // misses: unknown path on no host, the bare wildcard suffix, unknown exact and wildcard hosts
            miss("unknown.example.org", "/nothing/here/at/all"),
            miss("team-\(a).internal.example.com", "/"),
            miss("svc-zzzz.example.com", "/api/v1"),
            miss("x.team-zzzz.internal.example.com", "/api"),
        ]
    }
}

// MARK: - Rule evaluation

struct EvaluationFixture {
    var policy: RoutePolicy
    var facts: RequestFacts
    var principal: Principal?

    /// `decidingRule`: index of the one rule whose conditions all hold; nil: none holds.
    init(decidingRule: Int?) {
        var rules = RulePool.routeRules(count: rulesPerRoute)
        if let decidingRule {
            rules[decidingRule] = RulePool.matchingRule
        }
        self.policy = RoutePolicy(isPublic: false, rules: rules, pathPrefix: "/api")
        self.facts = RulePool.facts
        self.principal = RulePool.principal

        let decision = self.policy.evaluate(facts: self.facts, principal: self.principal)
        let expected: Decision =
            decidingRule.map { .allow(rule: $0) } ?? .deny(reason: .noRuleMatched, rule: nil)
        precondition(decision == expected, "expected \(expected), got \(decision)")
    }
}

/// Rules shaped like a real policy file. None of `routeRules` holds for `facts` and `principal`:
/// some fail on their first condition, some only on their last (after a method or path check
/// passed), so evaluation does the full work of each rule it skips.
enum RulePool {
    static let principal = Principal(
        issuer: "https://idp.example.com",
        subject: "user-7f3a9c",
        email: "alice.smith@example.com",
        groups: [
            "employees", "engineering", "eng-backend", "oncall-primary", "vpn-users",
            "github-org-members", "jira-users", "payments-readers", "k8s-viewers", "platform-eng",
        ],
        claims: ["tenant": .string("acme")]
    )

    static let facts = RequestFacts(
        listener: "https",
        method: "GET",
        host: "svc-0001.example.com",
        path: "/api/v1/jobs/123",
        clientAddress: IPAddress.parse("10.20.30.40"),
        time: 1_767_225_600  // 2026-01-01T00:00:00Z; fixed, so every run evaluates the same facts
    )

    /// Holds for `facts` and `principal`: method, relative path, then group.
    static let matchingRule = Rule(
        effect: .allow,
        conditions: [
            .methods(["GET", "HEAD"]),
            .paths([.prefix("/v1/jobs"), .exact("/v1/status")]),
            .groups(["platform-eng", "sre"]),
        ]
    )

    static func routeRules(count: Int) -> [Rule] {
        (0..<count).map { self.nonMatchingRule($0) }
    }

    private static func nonMatchingRule(_ index: Int) -> Rule {
        let id = RouteMix.id(index)
        let effect: RuleEffect = index % 7 == 6 ? .deny : .allow
        switch index % 6 {
        case 0:
            // Method passes; no group in common.
            return Rule(
                effect: effect,
                conditions: [.methods(["GET", "HEAD"]), .groups(["team-\(id)-admins", "team-\(id)-devs", "sre"])]
            )
        case 1:
            // Relative path passes (`/v1/...`); group fails.
            return Rule(
                effect: effect,
                conditions: [.paths([.prefix("/v1"), .exact("/healthz")]), .groups(["team-\(id)-readers"])]
            )
        case 2:
            // Another user's email.
            return Rule(effect: effect, conditions: [.emails(["user-\(id)@example.com", "ops-\(id)@example.com"])])
        case 3:
            // Subject fails first.
            return Rule(effect: effect, conditions: [.subjects(["svc-account-\(id)"]), .methods(["POST", "PUT"])])
        case 4:
            // Method passes, path passes, client address is outside the block.
            return Rule(
                effect: effect,
                conditions: [
                    .methods(["GET"]),
                    .paths([.prefix("/v1/jobs")]),
                    .sourceCIDRs([CIDR.parse("192.168.\(index).0/24")!, CIDR.parse("fd00:\(index)::/32")!]),
                ]
            )
        default:
            // Method fails.
            return Rule(effect: effect, conditions: [.methods(["DELETE"]), .groups(["employees"])])
        }
    }
}
