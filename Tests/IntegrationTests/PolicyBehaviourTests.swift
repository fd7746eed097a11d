import Crypto
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One proxy with one bearer-token route (`reports`) whose rules each test chooses, and a fake IdP
/// (discovery + JWKS) that is also the upstream. The policy file is rewritten by the tests to reload it.
private final class PolicyEnvironment: @unchecked Sendable {
    static let route = "reports"

    let idp: TestUpstream
    let signer: TestSigner
    let proxy: ProxyProcess
    let port: Int
    let adminPort: Int
    let pollInterval: String
    var issuer: String { "http://127.0.0.1:\(self.idp.port)" }
    var base: String { "http://127.0.0.1:\(self.port)" }

    init(rules: [String], pollInterval: String = "0s") async throws {
        self.pollInterval = pollInterval
        self.signer = TestSigner.es256(kid: "k1")
        self.idp = try await TestUpstream(name: "reports-upstream")
        self.idp.serveIssuer(signers: [self.signer])
        self.port = try freePort()
        self.adminPort = try freePort()
        do {
            self.proxy = try ProxyProcess(
                config: Self.policy(
                    port: self.port,
                    adminPort: self.adminPort,
                    idpPort: self.idp.port,
                    rules: rules,
                    pollInterval: pollInterval
                ),
                waitPort: self.port
            )
        } catch {
            self.idp.stop()
            throw error
        }
    }

    /// The whole policy file; only `rules` differ between the versions a test writes.
    func policy(rules: [String]) -> String {
        Self.policy(
            port: self.port,
            adminPort: self.adminPort,
            idpPort: self.idp.port,
            rules: rules,
            pollInterval: self.pollInterval
        )
    }

    static func policy(port: Int, adminPort: Int, idpPort: Int, rules: [String], pollInterval: String) -> String {
        """
        version: 1
        server: { reload_poll_interval: \(pollInterval) }
        listeners:
          - { name: web, address: "127.0.0.1:\(port)", protocol: http }
          - { name: ops, address: "127.0.0.1:\(adminPort)", protocol: admin }
        issuers:
          - name: idp
            issuer: http://127.0.0.1:\(idpPort)
            audiences: [portal]
        audit:
          sinks: [{ type: file, path: "\(Self.auditPath(port: port))" }]
        routes:
          - name: \(Self.route)
            listener: web
            match: { path: /* }
            upstream: http://127.0.0.1:\(idpPort)
            auth: { issuers: [idp], audiences: [portal] }
            timeouts: { response: 10s }
            rules:
        \(rules.map { "      " + $0 }.joined(separator: "\n"))

        """
    }

    /// The audit file (outside the log, which the tests read repeatedly; the same across reloads).
    static func auditPath(port: Int) -> String { NSTemporaryDirectory() + "portcullis-behaviour-audit-\(port).jsonl" }

    /// Writes a new policy file (atomically, as an editor or a config-management tool would) and sends SIGHUP.
    func reload(to text: String) throws {
        try text.write(toFile: self.proxy.configPath, atomically: true, encoding: .utf8)
        self.proxy.signal(SIGHUP)
    }

    /// The log lines containing `text`, in order.
    func logLines(containing text: String) -> [String] {
        self.proxy.log.split(separator: "\n").filter { $0.contains(text) }.map(String.init)
    }

    /// Waits until the proxy has logged `count` successful reloads.
    func waitForReloads(_ count: Int, timeout: TimeInterval = 10) -> Bool {
        eventually(timeout: timeout) { self.logLines(containing: "policy reloaded").count >= count }
    }

    func waitReady(timeout: TimeInterval = 15) -> Bool {
        eventually(timeout: timeout) {
            (try? curl(["--max-time", "2", "http://127.0.0.1:\(self.adminPort)/readyz"]))?.status == 200
        }
    }

    func token(sub: String, groups: [String]) throws -> String {
        try self.signer.token(
            claims: TestSigner.claims(
                iss: self.issuer,
                aud: "portal",
                sub: sub,
                groups: groups,
                email: "\(sub)@example.com"
            )
        )
    }

    func request(_ method: String = "GET", _ path: String, token: String?) throws -> CurlResult {
        var arguments = method == "HEAD" ? ["-I"] : ["-X", method]
        if method == "POST" { arguments += ["--data", "x"] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        return try curl(arguments + ["\(self.base)\(path)"])
    }

    func stop() {
        self.proxy.stop()
        self.idp.stop()
        try? FileManager.default.removeItem(atPath: Self.auditPath(port: self.port))
        try? FileManager.default.removeItem(atPath: Self.auditPath(port: self.port) + ".head")
    }
}

/// SHA-256 of the file's bytes in lower-case hex: the digest the proxy logs for a policy.
func policyDigest(_ text: String) -> String {
    SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
}

/// The error body as a JSON object (nil when it is not one).
private func errorJSON(_ result: CurlResult) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(result.body.utf8)) as? [String: Any]
}

/// The status code of a raw HTTP/1.1 response (0 when unreadable).
private func statusCode(of response: String) -> Int {
    let parts = response.prefix(while: { $0 != "\r" }).split(separator: " ")
    return parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
}

/// What the load clients saw, shared between their threads.
private final class LoadTally: @unchecked Sendable {
    private let lock = NSLock()
    private var statuses: [Int: Int] = [:]
    private var failures: [String] = []

    func record(status: Int) { self.lock.withLock { self.statuses[status, default: 0] += 1 } }
    func fail(_ what: String) { self.lock.withLock { self.failures.append(what) } }
    var byStatus: [Int: Int] { self.lock.withLock { self.statuses } }
    var problems: [String] { self.lock.withLock { self.failures } }
}

@Suite("policy behaviour end to end: 401 versus 403, reloads under load, in flight, refused", .serialized)
struct PolicyBehaviourTests {
    static let viewerRules = [
        "- deny: { groups: [suspended] }",
        "- allow: { groups: [admins] }",
        "- allow: { groups: [viewers], methods: [GET, HEAD] }",
    ]
    /// Policy A: viewers may read.
    static let rulesA = ["- allow: { groups: [viewers] }"]
    /// Policy B: only admins; viewers match no rule.
    static let rulesB = ["- allow: { groups: [admins] }"]

    @Test("no identity is 401 with a Bearer challenge; an identity that no rule allows is 403; denials leak no policy")
    func unauthenticatedVersusForbidden() async throws {
        let env = try await PolicyEnvironment(rules: Self.viewerRules)
        defer { env.stop() }
        #expect(env.waitReady())
        let route = PolicyEnvironment.route
        let policyWords = ["admins", "viewers", "suspended", "finance", "groups", "methods", "allow", "deny"]

        // No token: 401 before any rule runs, with a challenge and the one JSON error shape.
        let anonymous = try env.request("GET", "/reports/q1", token: nil)
        #expect(anonymous.status == 401)
        #expect(anonymous.header("www-authenticate")?.hasPrefix("Bearer") == true)
        let anonymousBody = try #require(errorJSON(anonymous), "\(anonymous.body)")
        #expect(anonymousBody["error"] as? String == "unauthorized")
        #expect(anonymousBody["reason"] as? String == "unauthenticated")
        #expect(anonymousBody["route"] as? String == route)
        let anonymousID = try #require(anonymousBody["request_id"] as? String)
        #expect(!anonymousID.isEmpty)
        #expect(anonymous.header("x-request-id") == anonymousID)

        // A valid token of a user in no listed group: 403, no rule matched.
        let outsider = try env.token(sub: "olga", groups: ["finance"])
        let forbidden = try env.request("GET", "/reports/q1", token: outsider)
        #expect(forbidden.status == 403)
        #expect(forbidden.header("www-authenticate") == nil)
        let forbiddenBody = try #require(errorJSON(forbidden), "\(forbidden.body)")
        #expect(forbiddenBody["error"] as? String == "forbidden")
        #expect(forbiddenBody["reason"] as? String == "no_rule_matched")
        #expect(forbiddenBody["route"] as? String == route)
        let forbiddenID = try #require(forbiddenBody["request_id"] as? String)
        #expect(!forbiddenID.isEmpty)
        #expect(forbidden.header("x-request-id") == forbiddenID)
        #expect(forbiddenID != anonymousID)

        // Viewers read but do not write; admins do both.
        let viewer = try env.token(sub: "vera", groups: ["viewers"])
        let viewerPost = try env.request("POST", "/reports/q1", token: viewer)
        #expect(viewerPost.status == 403)
        #expect(errorJSON(viewerPost)?["reason"] as? String == "no_rule_matched")
        let viewerGet = try env.request("GET", "/reports/q1", token: viewer)
        #expect(viewerGet.status == 200)
        #expect(viewerGet.header("x-upstream") == "reports-upstream")
        #expect(viewerGet.body.hasPrefix("GET /reports/q1\n"))
        #expect(try env.request("HEAD", "/reports/q1", token: viewer).status == 200)
        let admin = try env.token(sub: "adam", groups: ["admins"])
        let adminPost = try env.request("POST", "/reports/q1", token: admin)
        #expect(adminPost.status == 200)
        #expect(adminPost.body.hasPrefix("POST /reports/q1\n"))

        // An explicit deny that comes first wins over the admin rule that would allow.
        let suspended = try env.token(sub: "sam", groups: ["admins", "suspended"])
        let denied = try env.request("GET", "/reports/q1", token: suspended)
        #expect(denied.status == 403)
        #expect(errorJSON(denied)?["reason"] as? String == "denied_by_rule")
        #expect(denied.header("x-request-id") == errorJSON(denied)?["request_id"] as? String)

        // Denials say which route and why in a fixed code, never which rule, group or condition.
        for result in [forbidden, viewerPost, denied] {
            let body = try #require(errorJSON(result))
            #expect(Set(body.keys) == ["error", "reason", "request_id", "route"], "\(result.body)")
            for word in policyWords {
                #expect(!result.body.lowercased().contains(word), "\(word) in \(result.body)")
            }
        }

        // Only the allowed requests reached the upstream.
        let seen = env.idp.requests.filter { $0.uri == "/reports/q1" }.map(\.method)
        #expect(seen == ["GET", "HEAD", "POST"])
    }

    @Test("reload under keep-alive load: only 200 or 403, no 5xx, reset or hang; each reload logged with digests")
    func reloadUnderLoad() async throws {
        let env = try await PolicyEnvironment(rules: Self.rulesA)
        defer { env.stop() }
        #expect(env.waitReady())
        let viewer = try env.token(sub: "vera", groups: ["viewers"])
        #expect(try env.request("GET", "/warm", token: viewer).status == 200)

        let tally = LoadTally()
        let clients = 4
        let duration: TimeInterval = 6
        let done = DispatchGroup()
        let port = env.port
        for client in 0..<clients {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                let deadline = Date().addingTimeInterval(duration)
                var connection: RawClient?
                var sent = 0
                while Date() < deadline && sent < 50_000 {
                    if connection == nil {
                        do {
                            connection = try RawClient(port: port)
                        } catch {
                            tally.fail("client \(client): connect refused")
                            return
                        }
                    }
                    sent += 1
                    let request =
                        "GET /load/\(client)/\(sent) HTTP/1.1\r\nHost: reports\r\nAuthorization: Bearer \(viewer)\r\n\r\n"
                    do {
                        try connection!.send(request)
                    } catch {
                        tally.fail("client \(client) request \(sent): send failed (connection reset)")
                        connection = nil
                        continue
                    }
                    guard let response = connection!.readResponses(1, timeout: 5).first else {
                        tally.fail("client \(client) request \(sent): no response (reset or hang)")
                        connection = nil
                        continue
                    }
                    tally.record(status: statusCode(of: response))
                    if response.lowercased().contains("\r\nconnection: close") {
                        connection = nil
                    }
                }
                connection?.close()
            }
            thread.start()
        }

        // Alternate B, A, B, A, B while the clients run; each reload is confirmed before the next one.
        let a = env.policy(rules: Self.rulesA)
        let b = env.policy(rules: Self.rulesB)
        let versions = [b, a, b, a, b]
        let started = Date()
        for (index, version) in versions.enumerated() {
            usleep(700_000)
            try env.reload(to: version)
            #expect(env.waitForReloads(index + 1), "reload \(index + 1) not logged")
        }
        let reloadsTook = Date().timeIntervalSince(started)
        #expect(done.wait(timeout: .now() + duration + 30) == .success, "load clients did not finish")

        let byStatus = tally.byStatus
        #expect(tally.problems.isEmpty, "\(tally.problems.prefix(10))")
        #expect(Set(byStatus.keys).isSubset(of: [200, 403]), "\(byStatus)")
        // Both policies were in force while the load ran.
        #expect((byStatus[200] ?? 0) > 0 && (byStatus[403] ?? 0) > 0, "\(byStatus)")
        #expect(reloadsTook < duration, "the reloads outlasted the load (\(reloadsTook) s)")

        // After the last reload (B): the viewer is refused on a new connection; admins still pass.
        let after = try env.request("GET", "/after", token: viewer)
        #expect(after.status == 403)
        #expect(errorJSON(after)?["reason"] as? String == "no_rule_matched")
        #expect(try env.request("GET", "/after", token: try env.token(sub: "adam", groups: ["admins"])).status == 200)

        // Each reload is logged with the digests of the file it replaced and of the new one.
        let lines = env.logLines(containing: "policy reloaded")
        #expect(lines.count == versions.count, "\(lines)")
        var previous = a
        for (line, version) in zip(lines, versions) {
            #expect(line.contains("proxy_old_digest=\(policyDigest(previous))"), "\(line)")
            #expect(line.contains("proxy_new_digest=\(policyDigest(version))"), "\(line)")
            #expect(line.contains("proxy_trigger=SIGHUP"), "\(line)")
            previous = version
        }
        #expect(!env.proxy.log.contains("policy reload refused"))
    }

    @Test("a request in flight during a reload finishes under the policy it started with; the next one is judged anew")
    func inFlightKeepsItsPolicy() async throws {
        let env = try await PolicyEnvironment(rules: Self.rulesA)
        defer { env.stop() }
        #expect(env.waitReady())
        let viewer = try env.token(sub: "vera", groups: ["viewers"])
        let slowMilliseconds = 2500

        // Allowed by A and forwarded: the upstream holds it.
        let inflight = try RawClient(port: env.port)
        let path = "/slow/\(slowMilliseconds)/inflight"
        let sentAt = Date()
        try inflight.send("GET \(path) HTTP/1.1\r\nHost: reports\r\nAuthorization: Bearer \(viewer)\r\n\r\n")
        #expect(eventually(timeout: 2) { env.idp.requests.contains { $0.uri == path } })

        // Reload to B (viewers refused) while it waits upstream.
        try env.reload(to: env.policy(rules: Self.rulesB))
        #expect(env.waitForReloads(1))
        let fresh = try env.request("GET", "/fresh", token: viewer)
        #expect(fresh.status == 403)
        #expect(errorJSON(fresh)?["reason"] as? String == "no_rule_matched")
        // B answered while the first request was still upstream.
        #expect(Date().timeIntervalSince(sentAt) < Double(slowMilliseconds) / 1000, "the reload came too late to test")

        // The in-flight request gets its 200 from the upstream.
        let response = try #require(inflight.readResponses(1, timeout: 10).first)
        #expect(statusCode(of: response) == 200, "\(response)")
        #expect(response.contains("GET \(path)\n"))

        // A new request on the same (pre-reload) connection is judged by B.
        try inflight.send("GET /again HTTP/1.1\r\nHost: reports\r\nAuthorization: Bearer \(viewer)\r\n\r\n")
        let again = try #require(inflight.readResponses(1, timeout: 10).first)
        #expect(statusCode(of: again) == 403, "\(again)")
        #expect(!env.idp.requests.contains { $0.uri == "/again" || $0.uri == "/fresh" })
    }

    @Test("an invalid file (an unknown condition key) is refused with file, line and key; the old policy keeps serving")
    func invalidFileRefused() async throws {
        let env = try await PolicyEnvironment(rules: Self.rulesA)
        defer { env.stop() }
        #expect(env.waitReady())
        let viewer = try env.token(sub: "vera", groups: ["viewers"])
        let outsider = try env.token(sub: "olga", groups: ["finance"])
        let admin = try env.token(sub: "adam", groups: ["admins"])
        #expect(try env.request("GET", "/before", token: viewer).status == 200)
        #expect(try env.request("GET", "/before", token: outsider).status == 403)

        // A typo: were `grups` ignored, `allow: {}` would admit everyone.
        let broken = env.policy(rules: ["- allow: { grups: [admins] }"])
        let brokenLines = broken.components(separatedBy: "\n")
        let lineIndex = try #require(brokenLines.firstIndex { $0.contains("grups") })
        let column = try #require(brokenLines[lineIndex].range(of: "grups")).lowerBound.utf16Offset(
            in: brokenLines[lineIndex]
        )
        try env.reload(to: broken)
        #expect(eventually { env.proxy.log.contains("policy reload refused") })
        let refusal = try #require(env.logLines(containing: "policy reload refused").first)
        #expect(refusal.contains("\(env.proxy.configPath):\(lineIndex + 1):\(column + 1)"), "\(refusal)")
        #expect(refusal.contains("unknown key 'grups'"), "\(refusal)")
        #expect(refusal.contains("'groups'"), "a suggestion: \(refusal)")
        #expect(refusal.contains("proxy_old_digest=\(policyDigest(env.policy(rules: Self.rulesA)))"), "\(refusal)")
        #expect(env.logLines(containing: "policy reloaded").isEmpty)

        // A still serves, on new connections too: the viewer passes, the outsider is still refused.
        #expect(try env.request("GET", "/during", token: viewer).status == 200)
        let stillRefused = try env.request("GET", "/during", token: outsider)
        #expect(stillRefused.status == 403)
        #expect(errorJSON(stillRefused)?["reason"] as? String == "no_rule_matched")

        // The fixed file (B) is accepted, and replaces A, not the refused file.
        let fixed = env.policy(rules: Self.rulesB)
        try env.reload(to: fixed)
        #expect(env.waitForReloads(1))
        let applied = try #require(env.logLines(containing: "policy reloaded").first)
        #expect(applied.contains("proxy_old_digest=\(policyDigest(env.policy(rules: Self.rulesA)))"), "\(applied)")
        #expect(applied.contains("proxy_new_digest=\(policyDigest(fixed))"), "\(applied)")
        #expect(try env.request("GET", "/after", token: viewer).status == 403)
        #expect(try env.request("GET", "/after", token: admin).status == 200)
        #expect(try env.request("GET", "/after", token: outsider).status == 403)
    }

    @Test("reloads run one at a time: a slow SIGHUP reload of an older file never overwrites a newer one")
    func reloadsAreSerialized() async throws {
        let env = try await PolicyEnvironment(rules: Self.rulesA, pollInterval: "1s")
        defer { env.stop() }
        #expect(env.waitReady())
        let viewer = try env.token(sub: "vera", groups: ["viewers"])
        #expect(try env.request("GET", "/r", token: viewer).status == 200)

        // X: policy A padded with 12,000 routes, so that loading it takes seconds. Y: policy B, loaded at once.
        var filler: [String] = []
        for i in 0..<12_000 {
            filler.append(
                "  - { name: filler\(i), listener: web, match: { path: /filler/\(i)/* }, "
                    + "upstream: \"http://127.0.0.1:\(env.idp.port)\", auth: { issuers: [idp] }, "
                    + "rules: [ { allow: { groups: [viewers] } } ] }"
            )
        }
        let a = env.policy(rules: Self.rulesA)
        let x = a + filler.joined(separator: "\n") + "\n"
        let y = env.policy(rules: Self.rulesB)
        // SIGHUP starts loading X; Y replaces it on disk while X is still being loaded; the poller sees Y.
        try env.reload(to: x)
        usleep(150_000)
        try y.write(toFile: env.proxy.configPath, atomically: true, encoding: .utf8)

        // X may be applied (it was the file when SIGHUP came), but Y, the file on disk, must be applied last.
        let settled = eventually(timeout: 20) {
            let lines = env.logLines(containing: "policy reloaded")
            return lines.last?.contains("proxy_new_digest=\(policyDigest(y))") == true
                && lines.contains { $0.contains("proxy_new_digest=\(policyDigest(x))") }
        }
        let lines = env.logLines(containing: "policy reloaded")
        #expect(settled, "the last reload is not the file on disk: \(lines.map { $0.suffix(200) })")
        // Each reload replaced what the previous one applied.
        var previous = policyDigest(a)
        for line in lines {
            #expect(line.contains("proxy_old_digest=\(previous)"), "\(line)")
            previous = [x, y].map(policyDigest).first { line.contains("proxy_new_digest=\($0)") } ?? "?"
        }
        // And B serves, for longer than a poll interval.
        for _ in 0..<5 {
            #expect(try env.request("GET", "/r", token: viewer).status == 403)
            usleep(400_000)
        }
    }

    @Test("a SIGHUP sent the moment the proxy accepts neither kills it nor is lost")
    func sighupRightAfterStart() async throws {
        let upstream = try await TestUpstream(name: "early")
        defer { upstream.stop() }
        let binary = try portcullisBinary()
        func policy(port: Int, adminPort: Int, match: String) -> String {
            """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
              - { name: ops, address: "127.0.0.1:\(adminPort)", protocol: admin }
            routes:
              - name: early
                listener: web
                match: { path: "\(match)" }
                upstream: http://127.0.0.1:\(upstream.port)
                public: true

            """
        }
        for attempt in 0..<30 {
            let port = try freePort()
            let adminPort = try freePort()
            let dir = try makeTempDir()
            defer { try? FileManager.default.removeItem(at: dir) }
            let config = dir.appendingPathComponent("policy.yaml").path
            let logPath = dir.appendingPathComponent("portcullis.log").path
            let next = dir.appendingPathComponent("policy.next").path
            try policy(port: port, adminPort: adminPort, match: "/*")
                .write(toFile: config, atomically: true, encoding: .utf8)
            try policy(port: port, adminPort: adminPort, match: "/only/*")
                .write(toFile: next, atomically: true, encoding: .utf8)
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            defer { try? log.close() }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["serve", "--config", config]
            process.standardError = log
            process.standardOutput = log
            try process.run()
            defer {
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                process.waitUntilExit()
            }
            // Poll much faster than ProxyProcess does, to signal right after the listener accepts.
            let deadline = Date().addingTimeInterval(20)
            var accepting = false
            while !accepting && Date() < deadline && process.isRunning {
                if let client = try? RawClient(port: port) {
                    client.close()
                    accepting = true
                } else {
                    usleep(500)
                }
            }
            try #require(accepting, "attempt \(attempt): never accepted")
            // The new file (a rename: microseconds), then the signal.
            try #require(rename(next, config) == 0)
            kill(process.processIdentifier, SIGHUP)

            let applied = eventually(timeout: 10) {
                !process.isRunning || (try? curl(["--max-time", "2", "http://127.0.0.1:\(port)/x"]))?.status == 404
            }
            let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            guard process.isRunning else {
                let how = process.terminationReason == .uncaughtSignal ? "signal" : "exit"
                Issue.record("attempt \(attempt): the proxy died (\(how) \(process.terminationStatus))\n\(output)")
                break
            }
            #expect(applied, "attempt \(attempt): the new file was never applied\n\(output)")
        }
    }
}
