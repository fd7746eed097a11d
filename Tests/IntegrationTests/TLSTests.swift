import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Two development PKIs made by `portcullis certs dev`, an https listener with SNI, mTLS and a CRL,
/// a PROXY-protocol listener, and `openssl s_server` as an HTTPS upstream.
final class TLSEnvironment: @unchecked Sendable {
    let dir: URL
    let a: String  // PKI of the default certificate (localhost, 127.0.0.1) and of client certificates
    let b: String  // PKI of the api.test certificate
    let upstream: TestUpstream
    let opensslServer: Process
    let opensslPort: Int
    let port: Int
    let proxyProtocolPort: Int
    let plainPort: Int
    let adminPort: Int
    let proxy: ProxyProcess

    init() async throws {
        let binary = try portcullisBinary()
        self.dir = try makeTempDir()
        self.a = self.dir.appendingPathComponent("a").path
        self.b = self.dir.appendingPathComponent("b").path
        let madeA = try run(binary, ["certs", "dev", "--dir", self.a, "--name", "localhost", "127.0.0.1"])
        let madeB = try run(binary, ["certs", "dev", "--dir", self.b, "--name", "api.test"])
        guard madeA.status == 0, madeB.status == 0 else { throw HarnessError.failed("certs dev: \(madeA.stderr)\(madeB.stderr)") }
        // A bundle that trusts both CAs (clients during the certificate reload test).
        let bundle = try String(contentsOfFile: self.a + "/ca.pem", encoding: .utf8) + String(contentsOfFile: self.b + "/ca.pem", encoding: .utf8)
        try bundle.write(toFile: self.dir.appendingPathComponent("both-ca.pem").path, atomically: true, encoding: .utf8)

        self.upstream = try await TestUpstream()
        self.opensslPort = try freePort()
        self.opensslServer = Process()
        self.opensslServer.executableURL = URL(fileURLWithPath: try which("openssl"))
        self.opensslServer.arguments = [
            "s_server", "-accept", "127.0.0.1:\(self.opensslPort)", "-cert", self.a + "/server.pem", "-key", self.a + "/server-key.pem",
            "-www", "-quiet",
        ]
        self.opensslServer.standardOutput = FileHandle.nullDevice
        self.opensslServer.standardError = FileHandle.nullDevice
        try self.opensslServer.run()
        let server = self.opensslServer
        // Whatever fails below, the openssl server we started does not outlive the test.
        var started = false
        defer {
            if !started {
                kill(server.processIdentifier, SIGKILL)
                server.waitUntilExit()
            }
        }
        try waitForPort(self.opensslPort, process: self.opensslServer)

        self.port = try freePort()
        self.proxyProtocolPort = try freePort()
        self.plainPort = try freePort()
        self.adminPort = try freePort()
        let up = "http://127.0.0.1:\(self.upstream.port)"
        let policy = """
            version: 1
            server: { reload_poll_interval: 0s }
            listeners:
              - name: secure
                address: "127.0.0.1:\(self.port)"
                protocol: https
                tls:
                  certificates:
                    - { certificate: \(self.a)/server.pem, private_key: \(self.a)/server-key.pem }
                    - { certificate: \(self.b)/server.pem, private_key: \(self.b)/server-key.pem }
                  client_ca: \(self.a)/ca.pem
                  client_auth: optional
                  crl: \(self.a)/crl.pem
              - name: behind-lb
                address: "127.0.0.1:\(self.proxyProtocolPort)"
                protocol: http
                proxy_protocol: true
              - name: plain
                address: "127.0.0.1:\(self.plainPort)"
                protocol: http
              - { name: ops, address: "127.0.0.1:\(self.adminPort)", protocol: admin }
            routes:
              - { name: site, listener: secure, match: { path: /* }, upstream: "\(up)", public: true }
              - name: workers
                listener: secure
                match: { path: /workers/* }
                upstream: "\(up)"
                auth: { client_cert: required }
                rules: [ { allow: { authenticated: true } } ]
              - name: spiffe
                listener: secure
                match: { path: /spiffe/* }
                upstream: "\(up)"
                auth: { client_cert: required }
                rules:
                  - allow: { client_cert: { spiffe_ids: ["spiffe://example.com/airflow/*"], subject_cn: [portcullis dev client] }, paths: [/airflow/*] }
                  - allow: { client_cert: { spiffe_ids: ["spiffe://example.com/batch/*"] } }
              - name: tls-upstream
                listener: secure
                match: { path: /tls-upstream/* }
                upstream: { endpoints: ["https://localhost:\(self.opensslPort)"], tls: { ca: \(self.a)/ca.pem } }
                prefix_rewrite: /
                public: true
              - name: wrong-ca
                listener: secure
                match: { path: /wrong-ca/* }
                upstream: { endpoints: ["https://localhost:\(self.opensslPort)"], tls: { ca: \(self.b)/ca.pem } }
                prefix_rewrite: /
                public: true
              - { name: lb, listener: behind-lb, match: { path: /* }, upstream: "\(up)", public: true }
              - { name: plain, listener: plain, match: { path: /* }, upstream: "\(up)", public: true }
            """
        let proxyDir = self.dir.appendingPathComponent("proxy")
        try FileManager.default.createDirectory(at: proxyDir, withIntermediateDirectories: true)
        self.proxy = try ProxyProcess(config: policy, waitPort: self.port, dir: proxyDir)
        try waitForPort(self.adminPort)
        started = true
    }

    var base: String { "https://localhost:\(self.port)" }
    var resolve: [String] { ["--resolve", "localhost:\(self.port):127.0.0.1", "--resolve", "api.test:\(self.port):127.0.0.1"] }

    /// SHA-256 fingerprint of the certificate the proxy presents for `serverName` (openssl s_client).
    func presentedFingerprint(serverName: String) throws -> String {
        let openssl = try which("openssl")
        let result = try run(
            "/bin/bash",
            ["-c", "\(openssl) s_client -connect 127.0.0.1:\(self.port) -servername \(serverName) </dev/null 2>/dev/null | \(openssl) x509 -noout -fingerprint -sha256"]
        )
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func fingerprint(of file: String) throws -> String {
        try run(try which("openssl"), ["x509", "-in", file, "-noout", "-fingerprint", "-sha256"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() {
        self.proxy.stop()
        self.upstream.stop()
        // Stop the openssl server we started, by its PID (unconditionally: isRunning can lag behind).
        kill(self.opensslServer.processIdentifier, SIGKILL)
        self.opensslServer.waitUntilExit()
        try? FileManager.default.removeItem(at: self.dir)
    }
}

@Suite("TLS and listeners end to end (curl, openssl s_client, openssl s_server)", .serialized)
struct TLSTests {
    @Test("TLS termination: SNI picks the certificate; TLS 1.1 refused; Host differing from SNI gets 421")
    func sniAndVersions() async throws {
        let env = try await TLSEnvironment()
        defer { env.stop() }
        let ok = try curl(env.resolve + ["--cacert", env.a + "/ca.pem", "\(env.base)/hello"])
        #expect(ok.status == 200)
        #expect(env.upstream.requests.last?.header("x-forwarded-proto") == ["https"])

        #expect(try env.presentedFingerprint(serverName: "api.test") == env.fingerprint(of: env.b + "/server.pem"))
        #expect(try env.presentedFingerprint(serverName: "localhost") == env.fingerprint(of: env.a + "/server.pem"))
        #expect(try env.presentedFingerprint(serverName: "unknown.test") == env.fingerprint(of: env.a + "/server.pem"))
        let api = try curl(env.resolve + ["--cacert", env.b + "/ca.pem", "https://api.test:\(env.port)/api"])
        #expect(api.status == 200)

        // TLS 1.1 is refused (the minimum is 1.2, set explicitly).
        let old = try curl(env.resolve + ["--cacert", env.a + "/ca.pem", "--tlsv1.1", "--tls-max", "1.1", "\(env.base)/old"])
        #expect(old.exitCode != 0)
        #expect(old.status == 0)

        // SNI localhost, Host api.test: misdirected.
        let misdirected = try curl(env.resolve + ["--cacert", env.a + "/ca.pem", "-H", "Host: api.test", "\(env.base)/x"])
        #expect(misdirected.status == 421)
        #expect(reason(of: misdirected) == "misdirected_request")
    }

    @Test("mTLS: a valid client certificate is an identity; none is 401 on a route that requires it; revoked is refused")
    func mutualTLS() async throws {
        let env = try await TLSEnvironment()
        defer { env.stop() }
        let ca = ["--cacert", env.a + "/ca.pem"]
        let withCert = try curl(env.resolve + ca + ["--cert", env.a + "/client.pem", "--key", env.a + "/client-key.pem", "\(env.base)/workers/run"])
        #expect(withCert.status == 200)
        let without = try curl(env.resolve + ca + ["\(env.base)/workers/run"])
        #expect(without.status == 401)
        #expect(reason(of: without) == "client_certificate_required")
        // Rules on the certificate: its SPIFFE ID (spiffe://example.com/airflow/worker) and subject CN decide.
        let spiffe = env.resolve + ca + ["--cert", env.a + "/client.pem", "--key", env.a + "/client-key.pem"]
        #expect(try curl(spiffe + ["\(env.base)/spiffe/airflow/dags"]).status == 200)
        let otherPath = try curl(spiffe + ["\(env.base)/spiffe/batch/jobs"])
        #expect(otherPath.status == 403)
        #expect(reason(of: otherPath) == "no_rule_matched")
                // client_auth is optional on the listener: a public route needs no certificate.
        #expect(try curl(env.resolve + ca + ["\(env.base)/public"]).status == 200)
        // A revoked certificate fails the handshake: nothing reaches the upstream.
        env.upstream.reset()
        let revoked = try curl(
            env.resolve + ca + ["--cert", env.a + "/revoked-client.pem", "--key", env.a + "/revoked-client-key.pem", "\(env.base)/workers/run"]
        )
        #expect(revoked.status == 0)
        #expect(revoked.exitCode != 0)
        // A certificate from another CA is refused the same way (openssl s_client sees the alert).
        let openssl = try which("openssl")
        let foreign = try run(
            "/bin/bash",
            ["-c", "printf 'GET /workers/x HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n' | \(openssl) s_client -connect 127.0.0.1:\(env.port) -servername localhost -cert \(env.b)/client.pem -key \(env.b)/client-key.pem -CAfile \(env.a)/ca.pem -quiet 2>&1"]
        )
        #expect(!foreign.stdout.contains("HTTP/1.1 200"))
        #expect(env.upstream.requests.isEmpty)
    }

    @Test("upstream TLS: verified against the configured CA; a wrong CA gives 502")
    func upstreamTLS() async throws {
        let env = try await TLSEnvironment()
        defer { env.stop() }
        let ca = ["--cacert", env.a + "/ca.pem"]
        let good = try curl(env.resolve + ca + ["\(env.base)/tls-upstream/page"])
        #expect(good.status == 200)
        #expect(good.body.contains("<HTML>") || good.body.contains("<html>"))
        let wrong = try curl(env.resolve + ca + ["\(env.base)/wrong-ca/page"])
        #expect(wrong.status == 502)
        #expect(reason(of: wrong) == "upstream_unavailable")
    }

    @Test("PROXY protocol v1 and v2 give the real client address; missing headers close; forged ones are refused elsewhere")
    func proxyProtocol() async throws {
        let env = try await TLSEnvironment()
        defer { env.stop() }
        let v1 = try RawClient(port: env.proxyProtocolPort)
        try v1.send("PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nGET /v1 HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(v1.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        #expect(env.upstream.requests.last { $0.uri == "/v1" }?.header("x-forwarded-for") == ["203.0.113.9"])

        // v2: signature, version 2 / PROXY, TCP over IPv4, 12 bytes of addresses.
        var v2: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C]
        v2 += [198, 51, 100, 7, 127, 0, 0, 1, 0x1F, 0x90, 0x00, 0x50]
        v2 += Array("GET /v2 HTTP/1.1\r\nHost: a\r\n\r\n".utf8)
        let second = try RawClient(port: env.proxyProtocolPort)
        try second.send(v2)
        #expect(second.readResponses(1).first?.hasPrefix("HTTP/1.1 200") == true)
        #expect(env.upstream.requests.last { $0.uri == "/v2" }?.header("x-forwarded-for") == ["198.51.100.7"])

        // Required: a connection without the header is closed and nothing is forwarded.
        let missing = try RawClient(port: env.proxyProtocolPort)
        try missing.send("GET /no-header HTTP/1.1\r\nHost: a\r\n\r\n")
        let (text, closed) = missing.readUntilClose(timeout: 5)
        #expect(closed)
        #expect(text.isEmpty)
        #expect(!env.upstream.requests.contains { $0.uri == "/no-header" })

        // A listener that does not enable it refuses a forged header (the address is never believed).
        let forged = try RawClient(port: env.plainPort)
        try forged.send("PROXY TCP4 10.9.9.9 127.0.0.1 5555 80\r\nGET /forged HTTP/1.1\r\nHost: a\r\n\r\n")
        let (answer, _) = forged.readUntilClose(timeout: 5)
        #expect(answer.hasPrefix("HTTP/1.1 400"))
        #expect(!env.upstream.requests.contains { $0.uri == "/forged" })
    }

    @Test("certificates reload on SIGHUP under traffic without a failed request; a broken file keeps the old set")
    func certificateReload() async throws {
        let env = try await TLSEnvironment()
        defer { env.stop() }
        let bundle = env.dir.appendingPathComponent("both-ca.pem").path
        let before = try env.presentedFingerprint(serverName: "localhost")
        #expect(before == (try env.fingerprint(of: env.a + "/server.pem")))

        // Traffic from a second thread while the files are replaced and the proxy reloads.
        let failures = NIOLockedCounter()
        let done = NIOLockedCounter()
        let traffic = Thread {
            for i in 0..<40 {
                let r = try? curl(env.resolve + ["--cacert", bundle, "\(env.base)/load/\(i)"])
                if r?.status != 200 { failures.increment() }
                done.increment()
            }
        }
        traffic.start()
        usleep(300_000)
        // Replace the default pair with b's certificate (valid for api.test only, but a new set all the same)
        // by atomic renames; then SIGHUP.
        let fm = FileManager.default
        let newDir = env.dir.appendingPathComponent("c").path
        let made = try run(try portcullisBinary(), ["certs", "dev", "--dir", newDir, "--name", "localhost", "127.0.0.1"])
        #expect(made.status == 0)
        let combined = try String(contentsOfFile: bundle, encoding: .utf8) + String(contentsOfFile: newDir + "/ca.pem", encoding: .utf8)
        try combined.write(toFile: bundle, atomically: true, encoding: .utf8)
        for name in ["server.pem", "server-key.pem"] {
            let temporary = env.a + "/" + name + ".new"
            try? fm.removeItem(atPath: temporary)
            try fm.copyItem(atPath: newDir + "/" + name, toPath: temporary)
            #expect(rename(temporary, env.a + "/" + name) == 0)
        }
        env.proxy.signal(SIGHUP)
        #expect(eventually(timeout: 10) { env.proxy.log.contains("certificates reloaded") })
        #expect(eventually(timeout: 60) { done.value == 40 })
        #expect(failures.value == 0)
        #expect(try env.presentedFingerprint(serverName: "localhost") == env.fingerprint(of: newDir + "/server.pem"))

        // A broken key file: refused with a log line; the current set keeps serving.
        try "not a key".write(toFile: env.a + "/server-key.pem", atomically: true, encoding: .utf8)
        env.proxy.signal(SIGHUP)
        #expect(eventually(timeout: 10) { env.proxy.log.contains("certificate reload refused") })
        #expect(try curl(env.resolve + ["--cacert", bundle, "\(env.base)/after"]).status == 200)
        #expect(try env.presentedFingerprint(serverName: "localhost") == env.fingerprint(of: newDir + "/server.pem"))
    }
}

final class NIOLockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}
