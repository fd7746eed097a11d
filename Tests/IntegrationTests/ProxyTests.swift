import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("proxy end to end (spawned binary, curl, raw sockets)", .serialized)
struct ProxyTests {
    @Test("GET is forwarded with the normalized path, forwarding headers and hop-by-hop removal")
    func forwardsGet() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let result = try curl(["--path-as-is", "-H", "X-Forwarded-For: 6.6.6.6", "\(env.base)/public/%2e%2e/reports//daily/./x?q=1"])
        #expect(result.status == 200)
        let seen = try #require(env.upstream.requests.last)
        #expect(seen.uri == "/reports/daily/x?q=1")
        // The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
        #expect(seen.header("x-forwarded-for") == ["127.0.0.1"])
        #expect(seen.header("x-forwarded-proto") == ["http"])
        #expect(seen.header("x-forwarded-host") == ["127.0.0.1:\(env.port)"])
        #expect(seen.header("via") == ["1.1 portcullis"])
        let requestID = try #require(seen.header("x-request-id").first)
        #expect(requestID.count == 32)
        #expect(result.header("x-request-id") == requestID)
        // Hop-by-hop headers of the upstream response do not reach the client.
        #expect(result.header("x-hop") == nil)
        #expect(result.header("keep-alive") == nil)
        #expect(result.header("x-upstream") == "test")
    }

    @Test("normalization refusals answer 400 in the JSON error shape and never reach the upstream")
    func normalizationRefusals() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let cases: [(String, String)] = [
            ("/admin%2fx", "path_encoded_slash"),
            ("/admin%5cx", "path_backslash"),
            ("/admin;x", "path_parameter"),
            ("/a%00b", "path_control_character"),
            ("/%ff", "path_invalid_utf8"),
            ("/../admin", "path_above_root"),
            ("/%zz", "path_malformed_escape"),
        ]
        for (path, reason) in cases {
            let result = try curl(["--path-as-is", "\(env.base)\(path)"])
            #expect(result.status == 400, "\(path)")
            let body = try JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any]
            #expect(body?["error"] as? String == "bad_request", "\(path)")
            #expect(body?["reason"] as? String == reason, "\(path)")
            #expect((body?["request_id"] as? String)?.count == 32, "\(path)")
        }
        #expect(env.upstream.requests.isEmpty)
    }

    @Test("routing: /admin/* matches /admin; prefix_rewrite; Host set to the upstream's; unknown host on an auth route")
    func routing() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        // /admin is routed to the admin route (1 KiB body limit) — a 2 KiB body proves which route matched.
        let big = String(repeating: "a", count: 2048)
        let admin = try curl(["-X", "POST", "--data-binary", big, "\(env.base)/admin"])
        #expect(admin.status == 413)
        #expect(admin.body.contains("\"route\":\"admin\""))
        let adminSub = try curl(["\(env.base)/admin/users"])
        #expect(adminSub.status == 200)
        // /administrator is not under /admin/*: it goes to the catch-all public route.
        let administrator = try curl(["-X", "POST", "--data-binary", big, "\(env.base)/administrator"])
        #expect(administrator.status == 200)

        let api = try curl(["\(env.base)/api/jobs/7?x=1"])
        #expect(api.status == 200)
        let seen = try #require(env.upstream.requests.last)
        #expect(seen.uri == "/v2/jobs/7?x=1")
        #expect(seen.header("host") == ["127.0.0.1:\(env.upstream.port)"])
    }

    @Test("a route with auth fails closed: 401 with WWW-Authenticate and nothing forwarded (the issuer has no keys)")
    func authRouteFailsClosed() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let result = try curl(["-H", "Host: secure.test", "-H", "Authorization: Bearer abc.def.ghi", "\(env.base)/anything"])
        #expect(result.status == 401)
        #expect(result.header("www-authenticate")?.hasPrefix("Bearer") == true)
        #expect(result.body.contains("\"reason\":\"token_malformed\""))
        // Without a token: a bare challenge, still 401.
        let bare = try curl(["-H", "Host: secure.test", "\(env.base)/anything"])
        #expect(bare.status == 401)
        #expect(bare.body.contains("\"reason\":\"unauthenticated\""))
        #expect(!result.body.contains("abc.def.ghi"))
        #expect(env.upstream.requests.isEmpty)
    }

    @Test("spoofed identity and X-Portcullis-* headers never reach the upstream, in - and _ spellings")
    func spoofedHeadersStripped() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        // curl drops headers with underscores? No: it sends them as given.
        let result = try curl([
            "-H", "X-Portcullis-User: admin@evil", "-H", "X_Portcullis_Groups: admins", "-H", "x-portcullis-anything: 1",
            "-H", "X-Auth-Email: ceo@example.com", "-H", "X_Auth_Email: ceo@example.com",
            "-H", "X-Request-Id: forged-id", "-H", "Forwarded: for=1.2.3.4", "-H", "X-Real-IP: 1.2.3.4",
            "\(env.base)/whoami",
        ])
        #expect(result.status == 200)
        let seen = try #require(env.upstream.requests.last)
        let names = Set(seen.headers.map { $0.0.lowercased().replacingOccurrences(of: "_", with: "-") })
        #expect(!names.contains { $0.hasPrefix("x-portcullis-") })
        #expect(!names.contains("x-auth-email"))
        #expect(!names.contains("forwarded"))
        #expect(!names.contains("x-real-ip"))
        #expect(seen.header("x-request-id").first != "forged-id")
    }

    @Test("upstream refusing connections gives 502; an upstream that never answers gives 504")
    func upstreamFailures() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let down = try curl(["\(env.base)/down/x"])
        #expect(down.status == 502)
        #expect(down.body.contains("\"reason\":\"upstream_unavailable\""))
        let start = Date()
        let silent = try curl(["\(env.base)/silent"])
        #expect(silent.status == 504)
        #expect(silent.body.contains("\"reason\":\"upstream_timeout\""))
        #expect(Date().timeIntervalSince(start) < 10)
        let dropped = try curl(["-X", "POST", "--data-binary", "x", "\(env.base)/drop"])
        #expect(dropped.status == 502)
    }

    @Test("HTTP/1.1 framing attacks get 400, close the connection and never reach the upstream")
    func framingAttacks() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let attacks: [(String, String)] = [
            ("CL+TE", "POST /smuggle1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            ("duplicate differing CL", "POST /smuggle2 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
            ("bad chunk size", "POST /smuggle3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
            ("obs-fold", "GET /smuggle4 HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n"),
            ("bare LF", "GET /smuggle5 HTTP/1.1\nHost: a\n\n"),
            ("TE not chunked", "POST /smuggle6 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc"),
            ("space before colon", "GET /smuggle7 HTTP/1.1\r\nHost : a\r\n\r\n"),
        ]
        for (name, request) in attacks {
            let client = try RawClient(port: env.port)
            try client.send(request)
            let (text, closed) = client.readUntilClose(timeout: 5)
            #expect(text.hasPrefix("HTTP/1.1 400"), "\(name): \(text)")
            #expect(closed, "\(name): connection must close")
            client.close()
        }
        #expect(env.upstream.requests.filter { $0.uri.hasPrefix("/smuggle") }.isEmpty)
    }

    @Test("pipelined requests are answered in order on one connection")
    func pipelining() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let client = try RawClient(port: env.port)
        try client.send(
            "GET /slow/300/one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\nGET /%2e/three HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        let responses = client.readResponses(3, timeout: 10)
        #expect(responses.count == 3)
        if responses.count == 3 {
            #expect(responses[0].contains("GET /slow/300/one"))
            #expect(responses[1].contains("GET /two"))
            #expect(responses[2].contains("GET /three"))
        }
    }

    @Test("a malformed pipelined request is answered 400 after the requests before it, then the connection closes")
    func malformedPipelinedRequest() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        // All in one write: the parser fails on the third while the first is being served. Earlier the error
        // aborted the first request; now the two good ones are answered, then the 400.
        let client = try RawClient(port: env.port)
        try client.send(
            "GET /slow/300/one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n\r\n"
                + "GET /three HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n"
        )
        let (text, closed) = client.readUntilClose(timeout: 10)
        #expect(Self.statusLines(text) == ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 400"], "\(text)")
        #expect(text.contains("GET /slow/300/one") && text.contains("GET /two"))
        #expect(text.contains("malformed_request"))
        #expect(closed)
        #expect(env.upstream.requests.filter { $0.uri.hasPrefix("/three") }.isEmpty)

        // The same with the bad request sent while the first is being served (reads stay on during an exchange).
        let later = try RawClient(port: env.port)
        try later.send("GET /slow/300/first HTTP/1.1\r\nHost: a\r\n\r\n")
        try await Task.sleep(for: .milliseconds(100))
        try later.send("NOT HTTP AT ALL\r\n\r\n")
        let (laterText, laterClosed) = later.readUntilClose(timeout: 10)
        #expect(Self.statusLines(laterText) == ["HTTP/1.1 200", "HTTP/1.1 400"], "\(laterText)")
        #expect(laterText.contains("GET /slow/300/first"))
        #expect(laterClosed)
    }

    /// `HTTP/1.1 NNN` of each response in a stream of responses (a body need not end with a line break).
    static func statusLines(_ text: String) -> [String] {
        var found: [String] = []
        var rest = text[...]
        while let range = rest.range(of: "HTTP/1.1 ") {
            let line = rest[range.lowerBound...].prefix(12)
            if line.dropFirst(9).allSatisfy(\.isNumber) { found.append(String(line)) }
            rest = rest[range.upperBound...]
        }
        return found
    }

    @Test("slowloris behind a served request: a next head trickled during and after it gets 408 after header_read_timeout")
    func partialHeadDuringExchange() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        // Reads stay on while a request is served, so the start of the next head arrives before the response. A
        // head that then stops is an idle keep-alive connection (idle_timeout, 30 s here); one that keeps
        // trickling is cut off header_read_timeout (1 s here) after its first byte past the response.
        let client = try RawClient(port: env.port)
        try client.send("GET /slow/300/one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\nHost: a\r\n")
        try await Task.sleep(for: .milliseconds(100))
        try client.send("X-A: a")
        let first = client.readResponses(1, timeout: 5)
        #expect(first.first?.hasPrefix("HTTP/1.1 200") == true)
        let trickleStarted = Date()
        var closedAt: Date?
        var received = ""
        for _ in 0..<20 {
            if (try? client.send("a")) == nil { break }
            try await Task.sleep(for: .milliseconds(250))
            let (text, closed) = client.readUntilClose(timeout: 0.05)
            received += text
            if closed {
                closedAt = Date()
                break
            }
        }
        #expect(Self.statusLines(received) == ["HTTP/1.1 408"], "\(received)")
        let elapsed = try #require(closedAt, "still open after 5 s of trickling").timeIntervalSince(trickleStarted)
        #expect(elapsed < 2.5, "\(elapsed) s")
    }

    @Test("a request sent while the previous one is being served is answered next, in order")
    func requestDuringExchange() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let client = try RawClient(port: env.port)
        try client.send("GET /slow/300/one HTTP/1.1\r\nHost: a\r\n\r\n")
        try await Task.sleep(for: .milliseconds(100))
        try client.send("GET /two HTTP/1.1\r\nHost: a\r\n\r\n")
        let responses = client.readResponses(2, timeout: 10)
        #expect(responses.count == 2)
        if responses.count == 2 {
            #expect(responses[0].contains("GET /slow/300/one"))
            #expect(responses[1].contains("GET /two"))
        }
    }

    @Test("limits: oversized headers 431, body over the route limit 413, slow headers 408 without hurting others")
    func limits() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let huge = String(repeating: "h", count: 10_000)
        let tooLarge = try curl(["-H", "X-Big: \(huge)", "\(env.base)/x"])
        #expect(tooLarge.status == 431)

        let body = try curl(["-X", "POST", "--data-binary", String(repeating: "b", count: 4096), "\(env.base)/admin/x"])
        #expect(body.status == 413)

        // slowloris: a head that never completes is cut off after header_read_timeout (1 s)...
        let slow = try RawClient(port: env.port)
        try slow.send("GET /slowloris HTTP/1.1\r\nHost: a\r\nX-A: ")
        // ...while another client is served normally meanwhile.
        let other = try curl(["\(env.base)/meanwhile"])
        #expect(other.status == 200)
        let (text, closed) = slow.readUntilClose(timeout: 5)
        #expect(text.hasPrefix("HTTP/1.1 408"))
        #expect(closed)
    }

    @Test("Expect: 100-continue is answered only after authorization")
    func expectContinue() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        // Unauthorized: a final 401, never 100 Continue.
        let denied = try RawClient(port: env.port)
        try denied.send(
            "POST /upload HTTP/1.1\r\nHost: secure.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        let (text, _) = denied.readUntilClose(timeout: 5)
        #expect(text.hasPrefix("HTTP/1.1 401"))
        #expect(!text.contains("100 Continue"))

        // Authorized (public route): 100 Continue, then the body goes through.
        let allowed = try RawClient(port: env.port)
        try allowed.send("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        let first = allowed.readResponses(1, timeout: 5)
        #expect(first.first?.hasPrefix("HTTP/1.1 100 Continue") == true)
        try allowed.send("hello")
        let rest = allowed.readResponses(1, timeout: 5)
        #expect(rest.first?.hasPrefix("HTTP/1.1 200") == true)
        #expect(rest.first?.contains("body-bytes 5") == true)
        #expect(env.upstream.requests.last?.header("expect").isEmpty == true)
    }

    @Test("keep-alive to the upstream is reused, and a stale pooled connection is retried once for an idempotent request")
    func upstreamReuseAndStaleRetry() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        // One client connection (curl reuses it for all URLs) lands on one event loop: one upstream connection.
        let client = try RawClient(port: env.port)
        for i in 0..<5 {
            try client.send("GET /reuse/\(i) HTTP/1.1\r\nHost: a\r\n\r\n")
            let response = client.readResponses(1, timeout: 5)
            #expect(response.first?.hasPrefix("HTTP/1.1 200") == true)
        }
        let connections = Set(env.upstream.requests.filter { $0.uri.hasPrefix("/reuse/") }.map(\.connectionID))
        #expect(connections.count == 1)

        // /flaky closes its connection without answering on the connection's second request: the pooled
        // connection is stale; the proxy retries the GET once on a fresh connection and the client sees 200.
        env.upstream.reset()
        try client.send("GET /flaky/1 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(client.readResponses(1, timeout: 5).first?.hasPrefix("HTTP/1.1 200") == true)
        try client.send("GET /flaky/2 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(client.readResponses(1, timeout: 5).first?.hasPrefix("HTTP/1.1 200") == true)
        let flaky = env.upstream.requests.filter { $0.uri == "/flaky/2" }
        #expect(flaky.count == 2)
        #expect(Set(flaky.map(\.connectionID)).count == 2)
        // A non-idempotent request is not retried: 502.
        try client.send("POST /flaky/3 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        let post = client.readResponses(1, timeout: 5).first
        #expect(post?.hasPrefix("HTTP/1.1 502") == true)
    }

    @Test("admin listener: /healthz and /readyz")
    func admin() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let health = try curl(["http://127.0.0.1:\(env.adminPort)/healthz"])
        #expect(health.status == 200)
        let ready = try curl(["http://127.0.0.1:\(env.adminPort)/readyz"])
        #expect(ready.status == 200)
        #expect(ready.body.contains("ready"))
    }
}
