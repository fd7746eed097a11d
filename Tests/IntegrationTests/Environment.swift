import Foundation
import Testing

/// One proxy process with a test upstream and the standard test policy.
final class ProxyEnvironment: @unchecked Sendable {
    let upstream: TestUpstream
    let proxy: ProxyProcess
    let port: Int
    let adminPort: Int
    let dir: URL

    var base: String { "http://127.0.0.1:\(self.port)" }

    static let defaultLimits = "{ header_read_timeout: 1s, max_header_bytes: 8KiB, idle_timeout: 30s }"

    static func policy(
        port: Int,
        adminPort: Int,
        upstreamPort: Int,
        deadPort: Int,
        extraRoutes: String = "",
        listenerExtra: String = "",
        limits: String = defaultLimits,
        pollInterval: String = "0s"
    ) -> String {
        """
        version: 1
        server:
          shutdown_grace_period: 10s
          reload_poll_interval: \(pollInterval)
        listeners:
          - name: web
            address: 127.0.0.1:\(port)
            protocol: http
            limits: \(limits)
        \(listenerExtra)
          - name: ops
            address: 127.0.0.1:\(adminPort)
            protocol: admin
        issuers:
          - name: corp
            issuer: https://corp.example.com
            jwks_file: jwks.json
            audiences: [portcullis-tests]
        routes:
          - name: public
            listener: web
            match: { path: /* }
            upstream: http://127.0.0.1:\(upstreamPort)
            public: true
            max_request_body: 1GiB
            timeouts: { response: 2s }
          - name: admin
            listener: web
            match: { path: /admin/* }
            upstream: http://127.0.0.1:\(upstreamPort)
            public: true
            max_request_body: 1KiB
          - name: api
            listener: web
            match: { path: /api/* }
            upstream: http://127.0.0.1:\(upstreamPort)
            public: true
            prefix_rewrite: /v2
            preserve_host: false
          - name: secure
            listener: web
            match: { host: secure.test, path: /* }
            upstream: http://127.0.0.1:\(upstreamPort)
            auth: { issuers: [corp] }
            identity_headers: { X-Auth-Email: "${email}" }
          - name: down
            listener: web
            match: { path: /down/* }
            upstream: http://127.0.0.1:\(deadPort)
            public: true
        \(extraRoutes)
        audit:
          sinks: [{ type: file, path: "\(Self.auditPath(port: port))" }]
        """
    }

    /// The audit file: out of the log that tests read, the same across reloads.
    static func auditPath(port: Int) -> String { NSTemporaryDirectory() + "portcullis-env-audit-\(port).jsonl" }

    init(
        extraRoutes: String = "",
        listenerExtra: String = "",
        limits: String = ProxyEnvironment.defaultLimits,
        pollInterval: String = "0s",
        upstream: TestUpstream? = nil,
        launcher: [String] = []
    ) async throws {
        if let upstream {
            self.upstream = upstream
        } else {
            self.upstream = try await TestUpstream()
        }
        self.port = try freePort()
        self.adminPort = try freePort()
        let deadPort = try freePort()
        self.dir = try makeTempDir()
        try #"{"keys":[]}"#.write(to: self.dir.appendingPathComponent("jwks.json"), atomically: true, encoding: .utf8)
        let text = Self.policy(
            port: self.port,
            adminPort: self.adminPort,
            upstreamPort: self.upstream.port,
            deadPort: deadPort,
            extraRoutes: extraRoutes,
            listenerExtra: listenerExtra,
            limits: limits,
            pollInterval: pollInterval
        )
        self.proxy = try ProxyProcess(config: text, waitPort: self.port, dir: self.dir, launcher: launcher)
        try waitForPort(self.adminPort)
    }

    func stop() {
        self.proxy.stop()
        self.upstream.stop()
        try? FileManager.default.removeItem(atPath: Self.auditPath(port: self.port))
        try? FileManager.default.removeItem(atPath: Self.auditPath(port: self.port) + ".head")
    }
}
