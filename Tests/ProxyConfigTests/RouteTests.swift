import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("routes")
struct RouteTests {
    /// `head` plus one route whose first line is line 10; `lines` follow `name: r` (from line 11).
    func route(_ lines: String...) -> String {
        head + "  - name: r\n" + lines.map { "    \($0)\n" }.joined()
    }

    @Test func unknownRouteKeyWithSuggestion() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upsteam: http://a", "public: true"),
            line: 13,
            column: 5,
            "unknown key 'upsteam' in route 'r' (did you mean 'upstream'?)"
        )
    }

    @Test func missingRequiredKeys() {
        let yaml = self.route("public: true")
        expectDiagnostic(yaml, line: 10, column: 5, "route 'r': missing required key 'listener'")
        expectDiagnostic(yaml, line: 10, column: 5, "route 'r': missing required key 'match'")
        expectDiagnostic(yaml, line: 10, column: 5, "route 'r': missing required key 'upstream'")
    }

    @Test func missingName() {
        expectDiagnostic(
            head + "  - { listener: web, match: {}, upstream: http://a, public: true }\n",
            line: 10,
            column: 5,
            "routes[0]: missing required key 'name'"
        )
    }

    @Test func duplicateRouteName() {
        let route = "  - { name: r, listener: web, match: { path: /a }, upstream: http://a, public: true }\n"
        let second = "  - { name: r, listener: web, match: { path: /b }, upstream: http://a, public: true }\n"
        expectDiagnostic(
            head + route + second,
            line: 11,
            column: 13,
            "duplicate route name 'r' (first at line 10, column 13)"
        )
    }

    @Test func listenerDoesNotExist() {
        expectDiagnostic(
            self.route("listener: webb", "match: {}", "upstream: http://a", "public: true"),
            line: 11,
            column: 15,
            "route 'r': listener 'webb' does not exist (did you mean 'web'?)"
        )
    }

    @Test func adminListenerCarriesNoRoutes() {
        expectDiagnostic(
            self.route("listener: ops", "match: {}", "upstream: http://a", "public: true"),
            line: 11,
            column: 15,
            "route 'r': listener 'ops' is an admin listener; routes need an http or https listener"
        )
    }

    @Test func neitherAuthNorPublic() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a"),
            line: 10,
            column: 5,
            "route 'r' has neither 'auth' nor 'public: true' (routes are closed by default; say which)"
        )
        // `public: false` says the same as nothing.
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "public: false"),
            line: 10,
            column: 5,
            "route 'r' has neither 'auth' nor 'public: true'"
        )
    }

    @Test func bothAuthAndPublic() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "auth: { issuers: [corp] }", "public: true"),
            line: 15,
            column: 5,
            "route 'r' has both 'auth' and 'public: true'"
        )
    }

    @Test func stringWhereBoolExpected() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "public: \"true\""),
            line: 14,
            column: 13,
            "routes[0].public: expected true or false, got a string"
        )
    }

    @Test func unknownIssuerReference() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "auth: { issuers: [corp, crop2] }"),
            line: 14,
            column: 29,
            "routes[0].auth.issuers[1]: unknown issuer 'crop2'"
        )
    }

    @Test func authWithoutIssuersOrClientCert() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "auth: { audiences: [x] }"),
            line: 14,
            column: 11,
            "routes[0].auth: names neither 'issuers' nor 'client_cert'"
        )
    }

    @Test func clientCertNeedsAnHTTPSListener() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "auth: { client_cert: required }"),
            line: 14,
            column: 26,
            "route 'r': client_cert needs an https listener with 'tls.client_ca'; listener 'web' is http"
        )
    }

    @Test func clientCertNeedsAListenerWithClientCA() {
        let yaml = """
            version: 1
            listeners:
              - name: web
                address: "0.0.0.0:443"
                protocol: https
                tls: { certificates: [ { certificate: a.pem, private_key: k.pem } ] }
            routes:
              - { name: r, listener: web, match: {}, upstream: "http://a", auth: { client_cert: optional } }
            """
        expectDiagnostic(
            yaml,
            line: 8,
            column: 85,
            "route 'r': client_cert needs listener 'web' to have 'tls.client_ca'"
        )
        let withCA = yaml.replacing("private_key: k.pem } ] }", with: "private_key: k.pem } ], client_ca: ca.pem }")
        #expect(
            expectValid(withCA)?.config.routes.first?.auth
                == RouteAuthConfig(issuers: [], audiences: nil, clientCert: .optional)
        )
    }

    @Test func everyIssuerNeedsAnAudience() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "auth: { issuers: [bare] }"),
            line: 14,
            column: 23,
            "routes[0].auth.issuers[0]: no audience to check for tokens from issuer 'bare'"
        )
        // The route's own audiences are enough.
        #expect(
            diagnostics(
                self.route(
                    "listener: web",
                    "match: {}",
                    "upstream: http://a",
                    "auth: { issuers: [bare], audiences: [jobs] }"
                )
            ).filter { $0.severity == .error }.isEmpty
        )
    }

    @Test func listWhereMappingExpected() {
        expectDiagnostic(
            self.route("listener: web", "match: [a.example.com]", "upstream: http://a", "public: true"),
            line: 12,
            column: 12,
            "routes[0].match: expected a mapping, got a list"
        )
    }

    @Test func mappingWhereStringExpected() {
        expectDiagnostic(
            self.route("listener: web", "match:", "  host: { name: a }", "upstream: http://a", "public: true"),
            line: 13,
            column: 13,
            "routes[0].match.host: expected a string, got a mapping"
        )
    }

    @Test func badHostPattern() {
        expectDiagnostic(
            self.route("listener: web", "match: { host: \"a.*.example.com\" }", "upstream: http://a", "public: true"),
            line: 12,
            column: 20,
            "routes[0].match.host: host pattern \"a.*.example.com\""
        )
    }

    @Test func badPathPattern() {
        expectDiagnostic(
            self.route("listener: web", "match: { path: api/* }", "upstream: http://a", "public: true"),
            line: 12,
            column: 20,
            "routes[0].match.path: path pattern \"api/*\" must start with \"/\""
        )
    }

    @Test func duplicateMatch() {
        let first =
            "  - { name: a, listener: web, match: { host: x.example.com, path: /api/* }, upstream: http://a, public: true }\n"
        let second =
            "  - { name: b, listener: web, match: { host: X.example.com., path: /api/* }, upstream: http://b, public: true }\n"
        expectDiagnostic(
            head + first + second,
            line: 11,
            column: 38,
            "route 'b' has the same listener, host and path as route 'a' (line 10)"
        )
    }

    @Test(arguments: [
        ("ftp://files.example.com", "upstream URL scheme 'ftp' is not supported (use http or https)"),
        ("http://backend/base", "upstream URL may not carry a path ('/base'); use prefix_rewrite"),
        ("http://user:secret@backend", "upstream URL may not carry user info"),
        ("http://:8080", "has no host"),
        ("http://backend:99999", "port '99999' is not a number from 1 to 65535"),
        ("http://backend:", "port '' is not a number from 1 to 65535"),
        ("http://backend?x=1", "upstream URL may not carry a query"),
        ("http://backend#top", "upstream URL may not carry a fragment"),
        ("backend:8080", "is not a URL"),
        ("http://::1:8080", "an IPv6 address needs brackets"),
        ("http://back end", "is not a valid host name"),
    ])
    func badUpstreamURL(url: String, problem: String) {
        let found = expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: \"\(url)\"", "public: true"),
            line: 13,
            column: 15,
            "routes[0].upstream: "
        )
        #expect(found?.message.contains(problem) == true, "\(String(describing: found))")
        #expect(found?.message.contains("secret") == false)
    }

    @Test func upstreamListWithMixedSchemes() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: [\"http://a:80\", \"https://b\"]", "public: true"),
            line: 13,
            column: 31,
            "routes[0].upstream[1]: all endpoints of an upstream use one scheme ('https' here, 'http' before)"
        )
    }

    @Test func upstreamMappingNeedsEndpoints() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: { max_connections: 4 }", "public: true"),
            line: 13,
            column: 15,
            "routes[0].upstream: missing required key 'endpoints'"
        )
    }

    @Test func upstreamEmptyEndpoints() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: { endpoints: [] }", "public: true"),
            line: 13,
            column: 28,
            "routes[0].upstream.endpoints: empty list; an upstream needs at least one endpoint URL"
        )
    }

    @Test func upstreamForms() throws {
        let yaml =
            head + """
                  - { name: one, listener: web, match: { path: /one }, upstream: "http://backend:8080/", public: true }
                  - { name: many, listener: web, match: { path: /many }, upstream: ["https://a", "https://[2001:db8::2]:8443"], public: true }
                  - name: pool
                    listener: web
                    match: { path: /pool }
                    upstream: { endpoints: ["http://A.internal"], max_connections: 8, max_pending: 0, idle_timeout: 90s }
                    public: true

                """
        let routes = try #require(expectValid(yaml)).config.routes
        #expect(routes[0].upstream == UpstreamConfig(scheme: .http, endpoints: [HostPort(host: "backend", port: 8080)]))
        #expect(
            routes[1].upstream
                == UpstreamConfig(
                    scheme: .https,
                    endpoints: [HostPort(host: "a", port: 443), HostPort(host: "2001:db8::2", port: 8443)]
                )
        )
        #expect(
            routes[2].upstream
                == UpstreamConfig(
                    scheme: .http,
                    endpoints: [HostPort(host: "a.internal", port: 80)],
                    maxConnectionsPerEndpoint: 8,
                    maxPendingRequests: 0,
                    idleTimeout: .seconds(90)
                )
        )
    }

    @Test func identityHeaderOnPublicRoute() {
        expectDiagnostic(
            self.route(
                "listener: web",
                "match: {}",
                "upstream: http://a",
                "public: true",
                "identity_headers: { X-User: \"${email}\" }"
            ),
            line: 15,
            column: 5,
            "route 'r': identity headers on a public route"
        )
    }

    @Test(arguments: [
        ("\"X User\": \"${email}\"", 25, "'X User' is not a valid HTTP header name"),
        ("Content-Length: \"${email}\"", 25, "'Content-Length' can not be an identity header"),
        ("X-User: \"${mail}\"", 33, "X-User: unknown variable '${mail}' in template"),
        ("X-User: \"${email\"", 33, "X-User: unterminated '${' in template"),
        ("X-User: \"\"", 33, "X-User: empty template"),
    ])
    func badIdentityHeader(entry: String, column: Int, message: String) {
        expectDiagnostic(
            self.route(
                "listener: web",
                "match: {}",
                "upstream: http://a",
                "auth: { issuers: [corp] }",
                "identity_headers: { \(entry) }"
            ),
            line: 15,
            column: column,
            "routes[0].identity_headers" + (message.hasPrefix("X-User") ? "." : ": ") + message
        )
    }

    @Test func identityHeaderNamesIgnoreCase() {
        expectDiagnostic(
            self.route(
                "listener: web",
                "match: {}",
                "upstream: http://a",
                "auth: { issuers: [corp] }",
                "identity_headers:",
                "  X-User: \"${email}\"",
                "  x-user: \"${subject}\""
            ),
            line: 17,
            column: 7,
            "header 'x-user' is set twice (header names ignore case; first at line 16)"
        )
    }

    @Test func prefixRewriteNeedsAPrefixPath() {
        expectDiagnostic(
            self.route(
                "listener: web",
                "match: { path: /api }",
                "upstream: http://a",
                "public: true",
                "prefix_rewrite: /"
            ),
            line: 15,
            column: 5,
            "routes[0].prefix_rewrite: only valid when match.path is a prefix pattern ('/api/*')"
        )
    }

    @Test func prefixRewriteMustBeAPath() {
        expectDiagnostic(
            self.route(
                "listener: web",
                "match: { path: /api/* }",
                "upstream: http://a",
                "public: true",
                "prefix_rewrite: v2/"
            ),
            line: 15,
            column: 21,
            "routes[0].prefix_rewrite: must start with '/', got 'v2/'"
        )
    }

    @Test func timeoutsMustBePositive() {
        expectDiagnostic(
            self.route("listener: web", "match: {}", "upstream: http://a", "public: true", "timeouts: { connect: 0s }"),
            line: 15,
            column: 26,
            "routes[0].timeouts.connect: must be greater than zero"
        )
    }

    @Test func maxRequestBodyMustBeASize() {
        expectDiagnostic(
            self.route(
                "listener: web",
                "match: {}",
                "upstream: http://a",
                "public: true",
                "max_request_body: 10 parsecs"
            ),
            line: 15,
            column: 23,
            "routes[0].max_request_body: invalid size '10 parsecs'"
        )
    }

    @Test func typedRoute() throws {
        let yaml = self.route(
            "listener: web",
            "match: { host: \"*.Internal.example.com\", path: /jobs/* }",
            "upstream: https://jobs.internal:8443",
            "auth: { issuers: [corp, other], audiences: [jobs] }",
            "identity_headers: { X-Portcullis-User: \"${email}\", X-Team: \"${claims.team}\" }",
            "preserve_host: false",
            "prefix_rewrite: /v1",
            "timeouts: { connect: 2s, response: 1m, idle: 1h30m }",
            "max_request_body: 1MiB",
            "forward_token: true"
        )
        let route = try #require(expectValid(yaml)?.config.routes.first)
        #expect(
            route
                == RouteConfig(
                    name: "r",
                    listener: "web",
                    host: .wildcard(suffix: ".internal.example.com"),
                    path: .prefix("/jobs"),
                    upstream: UpstreamConfig(scheme: .https, endpoints: [HostPort(host: "jobs.internal", port: 8443)]),
                    isPublic: false,
                    auth: RouteAuthConfig(issuers: ["corp", "other"], audiences: ["jobs"], clientCert: nil),
                    identityHeaders: [
                        IdentityHeader(name: "X-Portcullis-User", template: "${email}"),
                        IdentityHeader(name: "X-Team", template: "${claims.team}"),
                    ],
                    rules: [],
                    preserveHost: false,
                    prefixRewrite: "/v1",
                    timeouts: RouteTimeouts(connect: .seconds(2), response: .seconds(60), idle: .seconds(5400)),
                    maxRequestBodyBytes: 1_048_576,
                    forwardToken: true,
                    location: ProxyModel.SourceLocation(file: "policy.yaml", line: 10, column: 5)
                )
        )
    }

    @Test func routeDefaults() throws {
        let route = try #require(
            expectValid(self.route("listener: web", "match: {}", "upstream: http://a", "public: true"))?.config.routes
                .first
        )
        #expect(route.host == .any)
        #expect(route.path == .prefix(""))
        #expect(route.isPublic)
        #expect(route.auth == nil)
        #expect(route.preserveHost)
        #expect(route.prefixRewrite == nil)
        #expect(route.timeouts == RouteTimeouts())
        #expect(route.maxRequestBodyBytes == 64 * 1024 * 1024)
        #expect(route.forwardToken == false)
    }
}
