import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("proxy end to end: pools, limits, framing in both directions", .serialized)
struct MoreProxyTests {
    @Test("several endpoints: round robin, and a refused endpoint fails over to the next")
    func roundRobinAndFailover() async throws {
        let second = try await TestUpstream(name: "second")
        defer { second.stop() }
        let dead = try freePort()
        let routes = """
              - name: pair
                listener: web
                match: { path: /pair/* }
                upstream: [http://127.0.0.1:PORT_A, http://localhost:\(second.port)]
                public: true
              - name: half-dead
                listener: web
                match: { path: /half/* }
                upstream: [http://127.0.0.1:\(dead), http://127.0.0.1:\(second.port)]
                public: true
            """
        let first = try await TestUpstream(name: "first")
        let env = try await ProxyEnvironment(
            extraRoutes: routes.replacingOccurrences(of: "PORT_A", with: String(first.port)),
            upstream: first
        )
        defer { env.stop() }
        let client = try RawClient(port: env.port)
        var served: [String] = []
        for i in 0..<6 {
            try client.send("GET /pair/\(i) HTTP/1.1\r\nHost: a\r\n\r\n")
            let response = try #require(client.readResponses(1, timeout: 5).first)
            #expect(response.hasPrefix("HTTP/1.1 200"))
            served.append(response.contains("x-upstream: first") ? "first" : "second")
        }
        #expect(served.filter { $0 == "first" }.count == 3, "\(served)")
        #expect(served.filter { $0 == "second" }.count == 3, "\(served)")
        // `localhost` is resolved when connecting: the named endpoint was reached.
        #expect(second.requests.contains { $0.uri.hasPrefix("/pair/") })

        for i in 0..<4 {
            let r = try curl(["\(env.base)/half/\(i)"])
            #expect(r.status == 200, "request \(i) to a pool with one dead endpoint")
        }
    }

    @Test("max_connections: connections beyond the limit are closed at accept; room returns when one closes")
    func maxConnections() async throws {
        let env = try await ProxyEnvironment(limits: "{ max_connections: 2, header_read_timeout: 5s }")
        defer { env.stop() }
        // The harness's readiness probe connection counts until the proxy has processed its close.
        usleep(500_000)
        let a = try RawClient(port: env.port)
        let b = try RawClient(port: env.port)
        try a.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(a.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        try b.send("GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(b.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        let c = try RawClient(port: env.port)
        try? c.send("GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
        let (text, closed) = c.readUntilClose(timeout: 5)
        #expect(text.isEmpty)
        #expect(closed)
        a.close()
        #expect(
            eventually(timeout: 5) {
                (try? curl(["--max-time", "2", "\(env.base)/d"]))?.status == 200
            }
        )
    }

    @Test("HEAD keeps the connection usable; chunked request and response bodies are re-framed correctly")
    func headAndChunked() async throws {
        let env = try await ProxyEnvironment()
        defer { env.stop() }
        let client = try RawClient(port: env.port)
        try client.send("HEAD /download/5000 HTTP/1.1\r\nHost: a\r\n\r\n")
        let (headText, headClosed) = client.readUntilClose(timeout: 1)
        #expect(!headClosed)
        #expect(headText.hasPrefix("HTTP/1.1 200"))
        #expect(headText.lowercased().contains("content-length: 5000"))
        #expect(headText.hasSuffix("\r\n\r\n"))  // the head only, no body bytes
        // The connection is still in sync: the next response starts right away.
        try client.send("GET /after-head HTTP/1.1\r\nHost: a\r\n\r\n")
        let second = try #require(client.readResponses(1, timeout: 5).first)
        #expect(second.hasPrefix("HTTP/1.1 200"))
        #expect(second.contains("GET /after-head"))

        let chunkedUpload = try curl([
            "-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", String(repeating: "z", count: 3000),
            "\(env.base)/chunked-upload",
        ])
        #expect(chunkedUpload.status == 200)
        #expect(chunkedUpload.body.contains("body-bytes 3000"))

        // Chunked body above the route limit (admin: 1 KiB): 413 once the limit is crossed.
        let tooBig = try curl([
            "-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", String(repeating: "z", count: 5000),
            "\(env.base)/admin/upload",
        ])
        #expect(tooBig.status == 413)

        let chunkedDownload = try curl(["\(env.base)/chunked/12345"])
        #expect(chunkedDownload.status == 200)
        #expect(chunkedDownload.body.count == 12345)
        #expect(chunkedDownload.body.allSatisfy { $0 == "c" })

        // An HTTP/1.0 client gets the body delimited by close when the upstream sends no length.
        let old = try curl(["--http1.0", "\(env.base)/chunked/2000"])
        #expect(old.status == 200)
        #expect(old.body.count == 2000)
    }

    @Test("the policy file is reloaded when it changes on disk, without a signal")
    func reloadOnFileChange() async throws {
        let env = try await ProxyEnvironment(pollInterval: "200ms")
        defer { env.stop() }
        #expect(try curl(["\(env.base)/admin/x"]).status == 200)
        let original = try String(contentsOfFile: env.proxy.configPath, encoding: .utf8)
        let changed = original.replacingOccurrences(
            of: "    match: { path: /admin/* }\n    upstream: http://127.0.0.1:\(env.upstream.port)\n    public: true",
            with: "    match: { path: /admin/* }\n    upstream: http://127.0.0.1:\(env.upstream.port)\n    auth: { issuers: [corp] }"
        )
        #expect(changed != original)
        try changed.write(toFile: env.proxy.configPath, atomically: true, encoding: .utf8)
        #expect(eventually(timeout: 10) { env.proxy.log.contains("policy reloaded") })
        #expect(env.proxy.log.contains("file change"))
        #expect(try curl(["\(env.base)/admin/x"]).status == 401)
    }

    @Test("idle keep-alive connections are closed after idle_timeout")
    func idleTimeout() async throws {
        let env = try await ProxyEnvironment(limits: "{ idle_timeout: 1s }")
        defer { env.stop() }
        let client = try RawClient(port: env.port)
        try client.send("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(client.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        let start = Date()
        let (_, closed) = client.readUntilClose(timeout: 5)
        #expect(closed)
        #expect(Date().timeIntervalSince(start) < 4)
    }

    @Test("no per-connection object outlives its connection: handlers, exchanges and timers end their cycles")
    func noLeakedConnectionObjects() async throws {
        // The request path holds its handler, exchanges, timers and upstream connections with strong references
        // (weak ones cost a refcount side table) and ends each cycle itself. A cycle left open shows here as a
        // live count that stays above zero after every client is gone.
        let env = try await ProxyEnvironment(limits: "{ header_read_timeout: 1s, idle_timeout: 30s }")
        defer { env.stop() }
        func live(_ name: String) throws -> Int {
            let text = try curl(["http://127.0.0.1:\(env.adminPort)/metrics"]).body
            let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { Int($0.split(separator: " ")[1]) } ?? -1
        }
        var clients: [RawClient] = []
        // Keep-alive requests, pipelined ones, a 502 (refused upstream), a parser error, a body over the limit.
        let keepAlive = try RawClient(port: env.port)
        for i in 0..<5 {
            try keepAlive.send("GET /ok/\(i) HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(keepAlive.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        }
        try keepAlive.send("GET /p/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p/2 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(keepAlive.readResponses(2).count == 2)
        try keepAlive.send("GET /down/x HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(keepAlive.readResponses(1).first?.hasPrefix("HTTP/1.1 502") == true)
        clients.append(keepAlive)
        let malformed = try RawClient(port: env.port)
        try malformed.send("NOT HTTP\r\n\r\n")
        #expect(malformed.readUntilClose(timeout: 5).closed)
        let tooLarge = try RawClient(port: env.port)
        try tooLarge.send("POST /admin/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n" + String(repeating: "x", count: 4096))
        #expect(tooLarge.readResponses(1).first?.hasPrefix("HTTP/1.1 413") == true)
        clients.append(tooLarge)
        // A client that goes away while the upstream has not answered (the exchange holds an upstream connection
        // and its response timer), and one that leaves half a head (the header-read timer runs).
        let gone = try RawClient(port: env.port)
        try gone.send("GET /silent HTTP/1.1\r\nHost: a\r\n\r\n")
        let half = try RawClient(port: env.port)
        try half.send("GET /half HTTP/1.1\r\nHost")
        #expect(eventually(timeout: 5) { env.upstream.requests.contains { $0.uri == "/silent" } })
        #expect(try live("portcullis_live_exchanges") >= 1)
        #expect(try live("portcullis_live_connection_handlers") >= 3)
        gone.close()
        half.close()
        for client in clients { client.close() }
        // Only the admin connection of the probe itself is not counted (another handler type).
        #expect(eventually(timeout: 10) {
            (try? live("portcullis_live_connection_handlers")) == 0 && (try? live("portcullis_live_exchanges")) == 0
        })
        #expect(try live("portcullis_live_connection_handlers") == 0)
        #expect(try live("portcullis_live_exchanges") == 0)
        // Upstream connections: the aborted one is closed and freed; what remains is the idle pool (at most one
        // per event loop for this one upstream here), never one per request.
        let upstream = try live("portcullis_live_upstream_connections")
        #expect(upstream >= 0 && upstream <= ProcessInfo.processInfo.activeProcessorCount)
    }
}
