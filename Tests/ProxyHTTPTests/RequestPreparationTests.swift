import Foundation
import NIOHTTP1
import PolicyCore
import ProxyConfig
import ProxyModel
import Testing

@testable import ProxyHTTP

private func makeSnapshot(
    trusted: [String] = [],
    routes: [RouteConfig]? = nil
) -> (RuntimeSnapshot, ListenerConfig) {
    let listener = ListenerConfig(
        name: "web",
        address: HostPort(host: "127.0.0.1", port: 8080),
        protocolKind: .http,
        trustedProxies: trusted.compactMap(CIDR.parse)
    )
    let upstream = UpstreamConfig(scheme: .http, endpoints: [HostPort(host: "10.0.0.5", port: 8081)])
    let defaultRoutes = [
        RouteConfig(name: "all", listener: "web", path: .prefix(""), upstream: upstream, isPublic: true),
        RouteConfig(
            name: "api",
            listener: "web",
            path: .prefix("/api"),
            upstream: upstream,
            isPublic: true,
            preserveHost: false,
            prefixRewrite: "/v1"
        ),
        RouteConfig(
            name: "secure",
            listener: "web",
            host: .exact("secure.example.com"),
            path: .prefix(""),
            upstream: upstream,
            auth: RouteAuthConfig(issuers: ["corp"]),
            identityHeaders: [IdentityHeader(name: "X-Auth-Email", template: "${email}")],
            maxRequestBodyBytes: 10
        ),
    ]
    let config = PortcullisConfig(listeners: [listener], routes: routes ?? defaultRoutes)
    return (RuntimeSnapshot(config: config), listener)
}

private func prepare(
    _ head: HTTPRequestHead,
    peer: String = "192.0.2.10",
    trusted: [String] = []
) -> PreparationOutcome {
    let (snapshot, listener) = makeSnapshot(trusted: trusted)
    let connection = ConnectionInfo(listener: listener, peer: IPAddress.parse(peer), peerDescription: peer, scheme: "http")
    return RequestPreparation.prepare(head: head, connection: connection, snapshot: snapshot) { "generated-id" }
}

private func head(_ method: HTTPMethod = .GET, _ uri: String, _ headers: [(String, String)]) -> HTTPRequestHead {
    HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))
}

private func forwarded(_ outcome: PreparationOutcome) -> PreparedRequest? {
    if case .forward(let request) = outcome { return request }
    return nil
}

private func rejection(_ outcome: PreparationOutcome) -> (ReasonCode, Bool)? {
    if case .reject(let reason, _, _, let close) = outcome { return (reason, close) }
    return nil
}

@Suite("request preparation: normalize, route, sanitize headers")
struct RequestPreparationTests {
    @Test("the upstream receives exactly the normalized path and the query")
    func normalizedPath() throws {
        let request = try #require(forwarded(prepare(head(.GET, "/public/%2e%2e/admin//x?a=%2F", [("Host", "app.example.com")]))))
        #expect(request.upstreamHead.uri == "/admin/x?a=%2F")
        #expect(request.facts.path == "/admin/x")
        #expect(request.facts.host == "app.example.com")
        #expect(request.route.name == "all")
    }

    @Test("prefix_rewrite and preserve_host: false")
    func rewrite() throws {
        let request = try #require(forwarded(prepare(head(.GET, "/api/jobs?x=1", [("Host", "app")]))))
        #expect(request.upstreamHead.uri == "/v1/jobs?x=1")
        #expect(request.upstreamHead.headers["host"] == ["10.0.0.5:8081"])
        let root = try #require(forwarded(prepare(head(.GET, "/api", [("Host", "app")]))))
        #expect(root.upstreamHead.uri == "/v1")
    }

    @Test("identity headers and X-Portcullis-* are stripped in - and _ spellings; Authorization not forwarded on auth routes")
    func stripping() throws {
        let request = try #require(
            forwarded(
                prepare(
                    head(
                        .GET,
                        "/",
                        [
                            ("Host", "secure.example.com"), ("X-Auth-Email", "ceo@x"), ("x_auth_email", "ceo@x"),
                            ("X-Portcullis-User", "root"), ("X_PORTCULLIS_GROUPS", "admins"),
                            ("Authorization", "Bearer secret"), ("Accept", "text/html"),
                        ]
                    )
                )
            )
        )
        let names = request.upstreamHead.headers.map { $0.name.lowercased() }
        #expect(!names.contains("x-auth-email"))
        #expect(!names.contains("x_auth_email"))
        #expect(!names.contains { $0.replacingOccurrences(of: "_", with: "-").hasPrefix("x-portcullis-") })
        #expect(!names.contains("authorization"))
        #expect(request.upstreamHead.headers["accept"] == ["text/html"])
    }

    @Test("hop-by-hop headers and those named by Connection are removed")
    func hopByHop() throws {
        let request = try #require(
            forwarded(
                prepare(
                    head(
                        .GET,
                        "/",
                        [
                            ("Host", "a"), ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "5"),
                            ("TE", "trailers"), ("Proxy-Authorization", "Basic x"), ("Upgrade", "websocket"),
                        ]
                    )
                )
            )
        )
        let names = Set(request.upstreamHead.headers.map { $0.name.lowercased() })
        for name in ["connection", "x-secret", "keep-alive", "te", "proxy-authorization", "upgrade"] {
            #expect(!names.contains(name), "\(name)")
        }
        #expect(request.requestedUpgrade)
    }

    @Test("X-Forwarded-* and X-Request-Id: client values replaced unless the peer is a trusted proxy")
    func forwardedHeaders() throws {
        let spoofed: [(String, String)] = [
            ("Host", "a"), ("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil"), ("X-Request-Id", "abc-123"),
        ]
        let untrusted = try #require(forwarded(prepare(head(.GET, "/", spoofed))))
        #expect(untrusted.upstreamHead.headers["x-forwarded-for"] == ["192.0.2.10"])
        #expect(untrusted.upstreamHead.headers["x-forwarded-proto"] == ["http"])
        #expect(untrusted.upstreamHead.headers["x-forwarded-host"] == ["a"])
        #expect(untrusted.upstreamHead.headers["x-request-id"] == ["generated-id"])
        #expect(untrusted.facts.clientAddress == IPAddress.parse("192.0.2.10"))

        let trusted = try #require(forwarded(prepare(head(.GET, "/", spoofed), trusted: ["192.0.2.0/24"])))
        #expect(trusted.upstreamHead.headers["x-forwarded-for"] == ["6.6.6.6, 192.0.2.10"])
        #expect(trusted.upstreamHead.headers["x-forwarded-proto"] == ["https"])
        #expect(trusted.upstreamHead.headers["x-forwarded-host"] == ["evil"])
        #expect(trusted.upstreamHead.headers["x-request-id"] == ["abc-123"])
        #expect(trusted.facts.clientAddress == IPAddress.parse("6.6.6.6"))

        // A malformed request id from a trusted proxy is replaced.
        let bad = try #require(
            forwarded(prepare(head(.GET, "/", [("Host", "a"), ("X-Request-Id", "bad id\u{7f}")]), trusted: ["192.0.2.0/24"]))
        )
        #expect(bad.upstreamHead.headers["x-request-id"] == ["generated-id"])
    }

    @Test("real client address: right-most X-Forwarded-For entry that is not a trusted proxy")
    func realClientAddress() throws {
        let request = try #require(
            forwarded(
                prepare(
                    head(.GET, "/", [("Host", "a"), ("X-Forwarded-For", "203.0.113.7, 10.1.1.1, 10.2.2.2")]),
                    peer: "10.0.0.1",
                    trusted: ["10.0.0.0/8"]
                )
            )
        )
        #expect(request.facts.clientAddress == IPAddress.parse("203.0.113.7"))
    }

    @Test(
        "refusals",
        arguments: [
            (head(.GET, "/x", []), ReasonCode.hostMissing),
            (head(.GET, "/x", [("Host", "a"), ("Host", "b")]), .hostMismatch),
            // Host's one-value fast path must refuse what the list form refuses.
            (head(.GET, "/x", [("Host", "a, b")]), .hostMismatch),
            (head(.GET, "/x", [("host", "a"), ("HOST", "a")]), .hostMismatch),
            (head(.GET, "/x", [("Host", "")]), .hostMissing),
            (head(.GET, "http://other.example.com/x", [("Host", "a.example.com")]), .hostMismatch),
            (head(.GET, "/x", [("Host", "bad host")]), .hostInvalid),
            (head(.GET, "/a%2fb", [("Host", "a")]), .pathEncodedSlash),
            (head(.POST, "/x", [("Host", "a"), ("Transfer-Encoding", "gzip")]), .unsupportedTransferEncoding),
            (head(.POST, "/x", [("Host", "a"), ("Content-Length", "3"), ("Content-Length", "4")]), .ambiguousFraming),
            (head(.POST, "/x", [("Host", "a"), ("Content-Length", "3"), ("Transfer-Encoding", "chunked")]), .ambiguousFraming),
            (head(.POST, "/x", [("Host", "secure.example.com"), ("Content-Length", "11")]), .bodyTooLarge),
            (head(.GET, "/x", [("Host", "a"), ("Expect", "something-else")]), .expectationFailed),
            (head(.CONNECT, "a:443", [("Host", "a")]), .unsupportedTargetForm),
        ]
    )
    func refusals(head: HTTPRequestHead, expected: ReasonCode) throws {
        let (reason, _) = try #require(rejection(prepare(head)))
        #expect(reason == expected)
    }

    @Test("no route: 404; a refused request with a body closes the connection, one without keeps it")
    func noRouteAndClose() throws {
        let (snapshot, listener) = makeSnapshot(routes: [
            RouteConfig(
                name: "only",
                listener: "web",
                host: .exact("only.example.com"),
                upstream: UpstreamConfig(scheme: .http, endpoints: [HostPort(host: "h", port: 1)]),
                isPublic: true
            )
        ])
        let connection = ConnectionInfo(listener: listener, peer: nil, peerDescription: "x", scheme: "http")
        let outcome = RequestPreparation.prepare(
            head: head(.GET, "/", [("Host", "elsewhere")]),
            connection: connection,
            snapshot: snapshot
        ) { "id" }
        let (reason, close) = try #require(rejection(outcome))
        #expect(reason == .routeNotFound)
        #expect(!close)
        let withBody = RequestPreparation.prepare(
            head: head(.POST, "/", [("Host", "elsewhere"), ("Content-Length", "5")]),
            connection: connection,
            snapshot: snapshot
        ) { "id" }
        #expect(rejection(withBody)?.1 == true)
    }

    @Test("absolute-form target that agrees with Host is accepted and forwarded in origin-form")
    func absoluteForm() throws {
        let request = try #require(forwarded(prepare(head(.GET, "http://A.example.com:80/x/../y", [("Host", "a.example.com")]))))
        #expect(request.upstreamHead.uri == "/y")
    }

    @Test("request ids: 32 lower-case hex, unique")
    func requestIDs() throws {
        let loop = LoopContextForTests.make()
        var seen = Set<String>()
        for _ in 0..<1000 {
            let id = loop.makeRequestID()
            #expect(id.count == 32)
            #expect(id.utf8.allSatisfy { ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) })
            seen.insert(id)
        }
        #expect(seen.count == 1000)
    }

    @Test("response sanitation: hop-by-hop removed, Via and X-Request-Id added")
    func responseSanitation() {
        var head = HTTPResponseHead(version: .http1_1, status: .ok)
        head.headers.add(name: "Connection", value: "X-Internal")
        head.headers.add(name: "X-Internal", value: "1")
        head.headers.add(name: "Transfer-Encoding", value: "chunked")
        head.headers.add(name: "Content-Type", value: "text/plain")
        let out = HeaderSanitizer.sanitizeResponse(head, clientVersion: .http1_1, requestID: "rid")
        #expect(out.headers["x-internal"].isEmpty)
        #expect(out.headers["transfer-encoding"].isEmpty)
        #expect(out.headers["connection"].isEmpty)
        #expect(out.headers["content-type"] == ["text/plain"])
        #expect(out.headers["via"] == ["1.1 portcullis"])
        #expect(out.headers["x-request-id"] == ["rid"])
    }
}
