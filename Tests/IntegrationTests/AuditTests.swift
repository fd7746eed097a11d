import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The audit file of a test, parsed.
struct AuditFile {
    let lines: [String]
    let events: [[String: Any]]

    init(paths: [String]) throws {
        var lines: [String] = []
        for path in paths {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            lines += text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty }
        }
        self.lines = lines
        self.events = try lines.map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw HarnessError.failed("not a JSON object: \(line)")
            }
            return object
        }
    }

    func events(kind: String) -> [[String: Any]] { self.events.filter { $0["kind"] as? String == kind } }

    func request(_ id: String?) -> [String: Any]? {
        guard let id else { return nil }
        return self.events.first { $0["kind"] as? String == "http.request" && $0["request_id"] as? String == id }
    }
}

/// Reads a pipe in the background once `start()` is called (until then, the writer blocks when it is full).
final class PipeDrain: @unchecked Sendable {
    let pipe = Pipe()
    private let lock = NSLock()
    private var data = Data()

    func start() {
        self.pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let chunk = handle.availableData
            guard let self else { return }
            self.lock.withLock { self.data.append(chunk) }
        }
    }

    var text: String { self.lock.withLock { String(decoding: self.data, as: UTF8.self) } }
}

@Suite("Audit trail", .serialized)
struct AuditTests {
    /// An Ed25519 key pair made by openssl (PEM), for signed checkpoints.
    static func checkpointKeys(in dir: URL) throws -> (privateKey: String, publicKey: String) {
        let openssl = try which("openssl")
        let key = dir.appendingPathComponent("checkpoint.pem").path
        let pub = dir.appendingPathComponent("checkpoint.pub.pem").path
        var result = try run(openssl, ["genpkey", "-algorithm", "ed25519", "-out", key])
        guard result.status == 0 else { throw HarnessError.failed("openssl genpkey: \(result.stderr)") }
        result = try run(openssl, ["pkey", "-in", key, "-pubout", "-out", pub])
        guard result.status == 0 else { throw HarnessError.failed("openssl pkey: \(result.stderr)") }
        return (key, pub)
    }

    /// Validates every line of an audit file against the JSON Schema (python3 + jsonschema; the test script
    /// installs it; missing, the test fails).
    static let schemaValidator = """
        import json, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        count = 0
        for number, line in enumerate(open(sys.argv[2]), 1):
            errors = list(validator.iter_errors(json.loads(line)))
            if errors:
                print(f"line {number}: {errors[0].message} at {list(errors[0].path)}")
                sys.exit(1)
            count += 1
        print(f"valid: {count} events")
        """

    static func verify(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = try run(try portcullisBinary(), ["audit", "verify"] + arguments)
        return (result.status, result.stdout + result.stderr)
    }

    @Test("every decision is one event with who, what and why; no token, cookie or query value reaches the file")
    func everyDecisionIsRecorded() async throws {
        let signer = TestSigner.es256(kid: "k1")
        let idp = try await TestUpstream(name: "idp")
        defer { idp.stop() }
        idp.serveIssuer(signers: [signer])
        idp.setResponse(path: "/healthz", body: "ok")
        let issuer = "http://127.0.0.1:\(idp.port)"
        let port = try freePort()
        let deadPort = try freePort()
        let auditDir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: auditDir) }
        let keys = try Self.checkpointKeys(in: auditDir)
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s, instance_id: audit-test }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
            issuers:
              - { name: idp, issuer: "\(issuer)", audiences: [app] }
            routes:
              - { name: health, listener: web, match: { path: /healthz }, upstream: "http://127.0.0.1:\(idp.port)", public: true, audit_query: [page] }
              - { name: down, listener: web, match: { path: /down/* }, upstream: "http://127.0.0.1:\(deadPort)", public: true }
              - name: app
                listener: web
                match: { path: /app/* }
                upstream: http://127.0.0.1:\(idp.port)
                auth: { issuers: [idp] }
                rules:
                  - deny: { methods: [DELETE] }
                  - allow: { groups: [admins] }
            audit:
              checkpoint: { key_file: \(keys.privateKey), every_events: 4 }
              sinks:
                - { type: file, path: \(auditDir.path)/audit.jsonl }
            """
        let proxy = try ProxyProcess(config: policy, waitPort: port)
        defer { proxy.stop() }
        let base = "http://127.0.0.1:\(port)"
        #expect(eventually(timeout: 15) { (try? curl(["\(base)/app/x"]).status) == 401 })  // keys loaded

        let admin = try signer.token(claims: TestSigner.claims(iss: issuer, aud: "app", sub: "alice", groups: ["admins"]))
        let viewer = try signer.token(claims: TestSigner.claims(iss: issuer, aud: "app", sub: "bob", groups: ["viewers"]))
        let expired = try signer.token(
            claims: TestSigner.claims(iss: issuer, aud: "app", exp: Int(Date().timeIntervalSince1970) - 3600)
        )
        let health = try curl(["-H", "Cookie: session=COOKIESECRET", "\(base)/healthz?page=2&token=QUERYSECRET&flag"])
        let allowed = try curl(["-H", "Authorization: Bearer \(admin)", "-H", "User-Agent: audit-test/1", "\(base)/app/reports"])
        let denied = try curl(["-X", "DELETE", "-H", "Authorization: Bearer \(admin)", "\(base)/app/reports"])
        let noRule = try curl(["-H", "Authorization: Bearer \(viewer)", "\(base)/app/reports"])
        let expiredResult = try curl(["-H", "Authorization: Bearer \(expired)", "\(base)/app/reports"])
        let missing = try curl(["\(base)/nowhere"])
        let down = try curl(["\(base)/down/x"])
        let statuses: [Int] = [
            health.status, allowed.status, denied.status, noRule.status, expiredResult.status, missing.status, down.status,
        ]
        #expect(statuses == [200, 200, 403, 403, 401, 404, 502])

        proxy.signal(SIGTERM)
        #expect(proxy.waitForExit(timeout: 15) == 0)
        let path = auditDir.appendingPathComponent("audit.jsonl").path
        let file = try AuditFile(paths: [path])

        // Who, what, why, per request (found by the X-Request-Id the client saw).
        let h = try #require(file.request(health.header("x-request-id")))
        #expect(h["decision"] as? String == "allow" && h["reason"] as? String == "allowed" && h["status"] as? Int == 200)
        #expect(h["query"] as? String == "page=2&token=REDACTED&REDACTED")
        #expect(h["path"] as? String == "/healthz" && h["route"] as? String == "health" && h["method"] as? String == "GET")
        #expect((h["upstream"] as? String)?.hasSuffix(":\(idp.port)") == true)
        #expect((h["client"] as? [String: Any])?["address"] as? String == "127.0.0.1")
        #expect((h["client"] as? [String: Any])?["port"] as? Int != nil)
        #expect(h["bytes_out"] as? Int == health.body.utf8.count, "\(h)")
        #expect(h["ttfb_us"] is Int && h["duration_us"] is Int, "\(h)")
        let a = try #require(file.request(allowed.header("x-request-id")))
        let identity = try #require(a["identity"] as? [String: Any])
        #expect(identity["subject"] as? String == "alice" && identity["issuer"] as? String == issuer)
        #expect(identity["groups"] as? [String] == ["admins"] && identity["email"] as? String == "alice@example.com")
        #expect(a["rule"] as? Int == 1 && a["user_agent"] as? String == "audit-test/1")
        let d = try #require(file.request(denied.header("x-request-id")))
        #expect(d["decision"] as? String == "deny" && d["reason"] as? String == "denied_by_rule" && d["rule"] as? Int == 0)
        let n = try #require(file.request(noRule.header("x-request-id")))
        #expect(n["reason"] as? String == "no_rule_matched" && n["rule"] == nil)
        #expect((n["identity"] as? [String: Any])?["subject"] as? String == "bob")
        let e = try #require(file.request(expiredResult.header("x-request-id")))
        #expect(e["decision"] as? String == "deny" && e["reason"] as? String == "token_expired" && e["status"] as? Int == 401)
        #expect(e["identity"] == nil)
        let m = try #require(file.request(missing.header("x-request-id")))
        #expect(m["decision"] as? String == "deny" && m["reason"] as? String == "route_not_found" && m["route"] == nil)
        let dn = try #require(file.request(down.header("x-request-id")))
        #expect(dn["decision"] as? String == "error" && dn["reason"] as? String == "upstream_unavailable" && dn["status"] as? Int == 502)

        // Process events and signed checkpoints are in the same chain.
        #expect(file.events(kind: "process.start").count == 1)
        #expect(file.events(kind: "process.stop").count == 1)
        #expect(file.events(kind: "audit.checkpoint").count >= 2)
        #expect(file.events.allSatisfy { $0["instance"] as? String == "audit-test" && $0["schema"] as? Int == 1 })

        // Secrets never reach the sink: the tokens sent, the cookie, the query value.
        let raw = try String(contentsOfFile: path, encoding: .utf8)
        for secret in [admin, viewer, expired, "COOKIESECRET", "QUERYSECRET", String(admin.split(separator: ".")[2])] {
            #expect(!raw.contains(secret))
        }

        // Every event matches the documented JSON Schema (docs/audit-event.schema.json).
        let schema = packageRoot.appendingPathComponent("docs/audit-event.schema.json").path
        let validation = try run(try which("python3"), ["-c", Self.schemaValidator, schema, path])
        #expect(validation.status == 0, "\(validation.stdout)\(validation.stderr)")
        #expect(validation.stdout.contains("valid: \(file.lines.count) events"), "\(validation.stdout)")

        // The chain verifies, with the head and the checkpoint key; an edited event does not.
        let head = path + ".head"
        let verified = try Self.verify([path, "--head", head, "--public-key", keys.publicKey])
        #expect(verified.status == 0, "\(verified.output)")
        var lines = file.lines
        let index = try #require(lines.firstIndex { $0.contains("\"denied_by_rule\"") })
        lines[index] = lines[index].replacingOccurrences(of: "\"decision\":\"deny\"", with: "\"decision\":\"allow\"")
        let tampered = auditDir.appendingPathComponent("tampered.jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: tampered, atomically: true, encoding: .utf8)
        let caught = try Self.verify([tampered, "--public-key", keys.publicKey])
        #expect(caught.status == 1)
        #expect(caught.output.contains("tampered.jsonl") && caught.output.contains(":\(index + 1)"), "\(caught.output)")
    }

    @Test("file, stdout and an HTTP collector receive the same sealed lines, and none holds a secret")
    func everySinkGetsTheSameLines() async throws {
        let upstream = try await TestUpstream()
        defer { upstream.stop() }
        upstream.setResponse(path: "/ok", body: "ok")
        let collector = try await TestUpstream(name: "collector")
        defer { collector.stop() }
        collector.setResponse(path: "/ingest", body: "{}")
        let port = try freePort()
        let auditDir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: auditDir) }
        let path = auditDir.appendingPathComponent("audit.jsonl").path
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
            routes:
              - { name: all, listener: web, match: { path: /* }, upstream: "http://127.0.0.1:\(upstream.port)", public: true }
            audit:
              sinks:
                - { type: stdout }
                - { type: file, path: \(path) }
                - type: http
                  url: http://127.0.0.1:\(collector.port)/ingest
                  format: ndjson
                  gzip: false
                  batch: { max_events: 5, flush_interval: 200ms }
            """
        let drain = PipeDrain()
        drain.start()
        let proxy = try ProxyProcess(config: policy, waitPort: port, standardOutput: drain.pipe)
        defer { proxy.stop() }
        let secrets = ["Bearer-SECRET-TOKEN-1", "COOKIE-SECRET-2", "QUERY-SECRET-3", "BASIC-SECRET-4"]
        for index in 0..<12 {
            let result = try curl([
                "-H", "Authorization: \(secrets[0])", "-H", "Cookie: sid=\(secrets[1])",
                "-u", "user:\(secrets[3])", "http://127.0.0.1:\(port)/ok?n=\(index)&key=\(secrets[2])",
            ])
            #expect(result.status == 200)
        }
        proxy.signal(SIGTERM)
        #expect(proxy.waitForExit(timeout: 15) == 0)

        let fileLines = try AuditFile(paths: [path]).lines
        let stdoutLines = drain.text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("{\"") }
        let shipped = collector.requests.filter { $0.uri == "/ingest" }
        #expect(shipped.allSatisfy { $0.method == "POST" && $0.header("content-type").first == "application/x-ndjson" })
        let collectorLines = shipped.flatMap { String(decoding: $0.body, as: UTF8.self).split(separator: "\n").map(String.init) }
        #expect(fileLines.count >= 14)  // chain start, process start, 12 requests, process stop
        #expect(stdoutLines == fileLines)
        #expect(collectorLines == fileLines, "the collector got every event once, in order")
        for secret in secrets {
            #expect(!fileLines.joined().contains(secret))
            #expect(!drain.text.contains(secret))
            #expect(!collectorLines.joined().contains(secret))
        }
    }

    @Test("reloads are events: accepted with both digests, refused with the reasons (an invalid file, a changed audit section)")
    func reloadsAreAudited() async throws {
        let upstream = try await TestUpstream()
        defer { upstream.stop() }
        let port = try freePort()
        let auditDir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: auditDir) }
        let path = auditDir.appendingPathComponent("audit.jsonl").path
        func policy(routePath: String, extraRoute: Bool = false, auditLine: String = "sinks: [{ type: file, path: \(path) }]")
            -> String
        {
            // extraRoute moves the audit section down a line: that alone is no change of the audit settings.
            """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
            routes:
              - { name: all, listener: web, match: { path: \(routePath) }, upstream: "http://127.0.0.1:\(upstream.port)", public: true }
            \(extraRoute ? "  - { name: more, listener: web, match: { path: /more/* }, upstream: \"http://127.0.0.1:\(upstream.port)\", public: true }\n" : "")audit:
              \(auditLine)
            """
        }
        let original = policy(routePath: "/*")
        let proxy = try ProxyProcess(config: original, waitPort: port)
        defer { proxy.stop() }
        func reload(_ text: String, expecting count: Int) throws {
            try text.write(toFile: proxy.configPath, atomically: true, encoding: .utf8)
            proxy.signal(SIGHUP)
            let seen = eventually(timeout: 10) {
                ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").components(separatedBy: "\"kind\":\"policy.reload\"").count - 1
                    >= count
            }
            #expect(seen, "policy.reload event \(count) written")
        }
        let accepted = policy(routePath: "/api/*", extraRoute: true)
        try reload(accepted, expecting: 1)
        let invalid = accepted.replacingOccurrences(of: "public: true", with: "publik: true")
        try reload(invalid, expecting: 2)
        let otherAudit = policy(routePath: "/api/*", extraRoute: true, auditLine: "sinks: [{ type: stdout }]")
        try reload(otherAudit, expecting: 3)
        proxy.signal(SIGTERM)
        #expect(proxy.waitForExit(timeout: 15) == 0)

        let reloads = try AuditFile(paths: [path]).events(kind: "policy.reload")
        try #require(reloads.count == 3)
        #expect(reloads[0]["outcome"] as? String == "accepted" && reloads[0]["trigger"] as? String == "SIGHUP")
        #expect(reloads[0]["old_digest"] as? String == policyDigest(original))
        #expect(reloads[0]["new_digest"] as? String == policyDigest(accepted))
        #expect(reloads[1]["outcome"] as? String == "refused" && reloads[1]["old_digest"] as? String == policyDigest(accepted))
        let errors = reloads[1]["errors"] as? [String] ?? []
        #expect(errors.contains { $0.contains("policy.yaml:6:") && $0.contains("publik") }, "\(errors)")
        #expect(reloads[2]["outcome"] as? String == "refused" && reloads[2]["new_digest"] as? String == policyDigest(otherAudit))
        #expect((reloads[2]["errors"] as? [String] ?? []).contains { $0.contains("audit") && $0.contains("restart") })
    }

    @Test("SIGKILL under load, then restart: the chain continues and verifies across the restart")
    func sigkillUnderLoadThenRestart() async throws {
        let upstream = try await TestUpstream()
        defer { upstream.stop() }
        upstream.setResponse(path: "/ok", body: "ok")
        let port = try freePort()
        let auditDir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: auditDir) }
        let path = auditDir.appendingPathComponent("audit.jsonl").path
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s, instance_id: kill-test }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
            routes:
              - { name: all, listener: web, match: { path: /* }, upstream: "http://127.0.0.1:\(upstream.port)", public: true }
            audit:
              sinks:
                - { type: file, path: \(path), rotate: { max_size: 64KiB, keep: 1000 } }
            """
        let first = try ProxyProcess(config: policy, waitPort: port)
        // Load from 4 keep-alive clients, bounded to 2 s, with SIGKILL in the middle of it.
        let answered = NIOLockedCounter()
        let deadline = Date().addingTimeInterval(2)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    guard let client = try? RawClient(port: port) else { return }
                    client.setReceiveTimeout(2)
                    while Date() < deadline {
                        guard (try? client.send("GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")) != nil else { return }
                        let responses = client.readResponses(1, timeout: 2)
                        guard responses.count == 1, responses[0].hasPrefix("HTTP/1.1 200") else { return }
                        answered.increment()
                    }
                }
            }
            group.addTask {
                usleep(1_000_000)
                kill(first.pid, SIGKILL)
            }
        }
        #expect(first.waitForExit(timeout: 10) != nil)
        let beforeKill = answered.value
        #expect(beforeKill > 50, "load ran: \(beforeKill) answers")

        let second = try ProxyProcess(config: policy, waitPort: port)
        defer { second.stop() }
        var ids: [String] = []
        for _ in 0..<10 {
            let result = try curl(["http://127.0.0.1:\(port)/ok"])
            #expect(result.status == 200)
            if let id = result.header("x-request-id") { ids.append(id) }
        }
        second.signal(SIGTERM)
        #expect(second.waitForExit(timeout: 15) == 0)
        first.stop()

        let rotated = (try FileManager.default.contentsOfDirectory(atPath: auditDir.path))
            .filter { $0.hasPrefix("audit-") && $0.hasSuffix(".jsonl") }.sorted()
        #expect(!rotated.isEmpty, "64KiB rotation happened under load")
        let files = rotated.map { auditDir.appendingPathComponent($0).path } + [path]
        let verified = try Self.verify(files + ["--head", path + ".head"])
        #expect(verified.status == 0, "\(verified.output)")
        let all = try AuditFile(paths: files)
        // One chain: the restart continued it (no second chain start), both starts are in it.
        #expect(all.events(kind: "audit.chain_start").count == 1)
        #expect(all.events(kind: "process.start").count == 2)
        let seqs = all.events.compactMap { $0["seq"] as? Int }
        #expect(seqs == Array(0..<seqs.count))
        // What the killed process wrote is intact (verify checked every line), and it is most of what it answered:
        // at most the in-memory queue and the batch being written were lost.
        let killedRequests = all.events.prefix { $0["kind"] as? String != "process.start" || ($0["seq"] as? Int) == 1 }
            .filter { $0["kind"] as? String == "http.request" }.count
        #expect(killedRequests > 0)
        for id in ids { #expect(all.request(id) != nil, "request \(id) after the restart is recorded") }
    }

    @Test("fail_closed: a full audit buffer refuses new requests with 503 until the writer catches up")
    func failClosedRefusesWhileTheSinkIsStuck() async throws {
        let (status, drainedRecovery, stdout) = try await Self.stuckStdout(mode: "fail_closed")
        #expect(status.last?.status == 503, "a request was refused while the sink was stuck")
        #expect(status.first?.status == 200)
        #expect(drainedRecovery, "requests are served again once the sink drains")
        // No request was served unrecorded: every 200 has its event.
        for served in status where served.status == 200 {
            #expect(stdout.contains("\"request_id\":\"\(served.requestID)\""), "event of \(served.requestID)")
        }
        // The refused requests' own events are recorded if the writer made room in between (it polls every
        // 2 ms, so a 16-event buffer can be full for an instant), or counted: never lost silently.
        let refused = status.filter { $0.status == 503 }
        let refusedRecorded = refused.filter { stdout.contains("\"request_id\":\"\($0.requestID)\"") }.count
        #expect(Self.droppedCounts(stdout) + refusedRecorded >= refused.count)
    }

    @Test("drop: requests go on while the sink is stuck; the loss is counted in an audit.dropped event")
    func dropCountsTheLoss() async throws {
        let (status, drainedRecovery, stdout) = try await Self.stuckStdout(mode: "drop")
        #expect(status.count == 3000 && status.allSatisfy { $0.status == 200 })
        #expect(drainedRecovery)
        let recorded = status.filter { stdout.contains("\"request_id\":\"\($0.requestID)\"") }.count
        let dropped = Self.droppedCounts(stdout)
        #expect(dropped > 0, "an audit.dropped event was written when space returned")
        // Every request is either recorded or counted as dropped.
        #expect(recorded + dropped >= 3000, "recorded \(recorded), dropped \(dropped)")
        #expect(recorded < 3000)
    }

    static func droppedCounts(_ stdout: String) -> Int {
        stdout.split(separator: "\n").filter { $0.contains("\"kind\":\"audit.dropped\"") }.compactMap { line -> Int? in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["count"] as? Int
        }.reduce(0, +)
    }

    /// The stdout sink writes into a pipe nobody reads (64 KiB): the writer blocks, the 16-event buffer
    /// fills. Returns the statuses seen while stuck, whether a request succeeded after draining, and stdout.
    static func stuckStdout(mode: String) async throws -> ([(status: Int, requestID: String)], Bool, String) {
        let upstream = try await TestUpstream()
        defer { upstream.stop() }
        upstream.setResponse(path: "/ok", body: "ok")
        let port = try freePort()
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
            routes:
              - { name: all, listener: web, match: { path: /* }, upstream: "http://127.0.0.1:\(upstream.port)", public: true }
            audit:
              on_overflow: \(mode)
              buffer_events: 16
              sinks: [{ type: stdout }]
            """
        let drain = PipeDrain()
        let proxy = try ProxyProcess(config: policy, waitPort: port, standardOutput: drain.pipe)
        defer { proxy.stop() }
        var client = try RawClient(port: port)
        client.setReceiveTimeout(5)
        var statuses: [(status: Int, requestID: String)] = []
        // Bounded: 3,000 requests at most (a new connection every 500); stop at the first 503.
        for index in 0..<3000 {
            if index > 0 && index % 500 == 0 {
                client.close()
                client = try RawClient(port: port)
                client.setReceiveTimeout(5)
            }
            try client.send("GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            guard let response = client.readResponses(1, timeout: 5).first,
                let status = Int(response.dropFirst(9).prefix(3))
            else { break }
            let id = response.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-request-id:") }
                .map { String($0.dropFirst("x-request-id:".count).trimmingCharacters(in: .whitespaces)) } ?? ""
            statuses.append((status, id))
            if status == 503 {
                #expect(response.contains("\"reason\":\"audit_unavailable\""))
                break
            }
        }
        drain.start()
        let recovered = eventually(timeout: 10) {
            guard let fresh = try? RawClient(port: port) else { return false }
            fresh.setReceiveTimeout(2)
            guard (try? fresh.send("GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")) != nil else { return false }
            return fresh.readResponses(1, timeout: 2).first?.hasPrefix("HTTP/1.1 200") == true
        }
        // Let the writer catch up and report, then stop cleanly.
        _ = eventually(timeout: 5) { drain.text.contains("audit.dropped") || mode != "drop" }
        proxy.signal(SIGTERM)
        _ = proxy.waitForExit(timeout: 15)
        return (statuses, recovered, drain.text)
    }

    @Test("a request still running after the threshold gets an event at once, and its completion event later")
    func longRunningRequests() async throws {
        let upstream = try await TestUpstream()
        defer { upstream.stop() }
        let port = try freePort()
        let auditDir = try makeTempDir()
        defer { try? FileManager.default.removeItem(at: auditDir) }
        let path = auditDir.appendingPathComponent("audit.jsonl").path
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - { name: web, address: "127.0.0.1:\(port)", protocol: http }
            routes:
              - { name: all, listener: web, match: { path: /* }, upstream: "http://127.0.0.1:\(upstream.port)", public: true, timeouts: { response: 10s } }
            audit:
              long_request_threshold: 500ms
              sinks: [{ type: file, path: \(path), fsync_interval: 0s }]
            """
        let proxy = try ProxyProcess(config: policy, waitPort: port)
        defer { proxy.stop() }
        let started = Date()
        let slow = Task { try curl(["http://127.0.0.1:\(port)/slow/4000"]) }
        // While it runs: the long-running event is in the file already.
        let seenEarly = eventually(timeout: 3.4) {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").contains("\"kind\":\"http.request.long_running\"")
        }
        #expect(seenEarly)
        #expect(Date().timeIntervalSince(started) < 3.9, "seen before the response completed")
        let result = try await slow.value
        #expect(result.status == 200)
        proxy.signal(SIGTERM)
        #expect(proxy.waitForExit(timeout: 15) == 0)
        let file = try AuditFile(paths: [path])
        let id = result.header("x-request-id")
        let early = try #require(file.events(kind: "http.request.long_running").first { $0["request_id"] as? String == id })
        #expect(early["decision"] as? String == "allow" && early["status"] as? Int == 0)
        let done = try #require(file.request(id))
        #expect(done["status"] as? Int == 200 && (done["duration_us"] as? Int ?? 0) >= 4_000_000)
    }

    @Test("authentication failures are rate-limited per client address; the suppressed count is recorded")
    func authenticationFailuresAreRateLimited() async throws {
        let env = try await IdentityEnvironment(signers: [TestSigner.es256(kid: "k1")])
        defer { env.stop() }
        #expect(env.waitReady())
        // 40 bad tokens at once on one keep-alive connection (one event loop: the buckets are per loop):
        // burst 3 recorded, the rest suppressed.
        let client = try RawClient(port: env.port)
        client.setReceiveTimeout(5)
        let request = "GET /x HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer not.a.token\r\n\r\n"
        for _ in 0..<40 {
            try client.send(request)
            #expect(client.readResponses(1, timeout: 5).first?.hasPrefix("HTTP/1.1 401") == true)
        }
        usleep(1_200_000)  // rate 2/s: room for the next one
        try client.send(request)
        let lastResponse = try #require(client.readResponses(1, timeout: 5).first)
        #expect(lastResponse.hasPrefix("HTTP/1.1 401"))
        let lastID = lastResponse.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-request-id:") }
            .map { String($0.dropFirst("x-request-id:".count).trimmingCharacters(in: .whitespaces)) }
        client.close()
        env.proxy.signal(SIGTERM)
        #expect(env.proxy.waitForExit(timeout: 15) == 0)
        let file = try AuditFile(paths: [env.auditPath])
        let failures = file.events(kind: "http.request").filter { $0["reason"] as? String == "token_malformed" }
        #expect(failures.count < 10, "a flood does not fill the trail: \(failures.count) events")
        let final = try #require(file.request(lastID))
        #expect((final["suppressed_before"] as? Int ?? 0) > 0, "the next recorded failure carries the count")
        // Every failure is accounted for: recorded one by one, or counted (with the next recorded failure on the
        // same event loop, or in an auth.suppressed event at shutdown).
        let suppressed = failures.compactMap { $0["suppressed_before"] as? Int }.reduce(0, +)
            + file.events(kind: "auth.suppressed").compactMap { $0["count"] as? Int }.reduce(0, +)
        #expect(failures.count + suppressed == 41, "recorded \(failures.count), suppressed \(suppressed)")
    }
}
