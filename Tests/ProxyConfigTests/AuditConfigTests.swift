import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("audit: section")
struct AuditConfigTests {
    let top = """
        version: 1
        listeners:
          - { name: web, address: "0.0.0.0:8080", protocol: http }
        routes:
          - { name: api, listener: web, match: { path: /api/* }, upstream: "http://10.0.0.1:80", public: true, audit_query: [page, dag_id] }

        """

    @Test func withoutASectionTheTrailGoesToStdout() {
        let loaded = expectValid(self.top)
        #expect(loaded?.config.audit.isDefault == true)
        #expect(loaded?.config.audit.sinks == [.stdout])
        #expect(loaded?.config.audit.onOverflow == .failClosed)
        #expect(loaded?.config.routes.first?.auditQueryParameters == ["page", "dag_id"])
    }

    @Test func everyOptionIsRead() {
        let yaml = self.top + """
            audit:
              on_overflow: drop
              buffer_events: 1024
              long_request_threshold: 30s
              auth_failure_limit: { rate: 5, burst: 7 }
              head_file: state/audit.head
              sinks:
                - { type: stdout }
                - type: file
                  path: logs/audit.jsonl
                  rotate: { max_size: 10MiB, max_age: 1h, keep: 3 }
                  fsync_interval: 250ms
                - type: http
                  url: https://splunk.example.com:8088/services/collector/event
                  format: splunk_hec
                  token_env: SPLUNK_TOKEN
                  batch: { max_events: 100, max_bytes: 64KiB, flush_interval: 2s }
                  retry: { initial_backoff: 1s, max_backoff: 1m }
                  spool: { directory: spool, max_size: 1GiB }
                  index: security
                - { type: syslog, address: "logs.example.com:6514", app_name: gate, facility: 10 }
            """
        guard let audit = expectValid(yaml)?.config.audit else { return }
        #expect(audit.onOverflow == .drop)
        #expect(audit.bufferEvents == 1024)
        #expect(audit.longRequestThreshold == .seconds(30))
        #expect(audit.authFailureRate == 5 && audit.authFailureBurst == 7)
        #expect(audit.headFile == "/etc/portcullis/state/audit.head")
        #expect(audit.isDefault == false)
        #expect(audit.sinks.count == 4)
        guard case .file(let file) = audit.sinks[1], case .http(let http) = audit.sinks[2],
            case .syslog(let syslog) = audit.sinks[3]
        else {
            Issue.record("sink types: \(audit.sinks.map(\.typeName))")
            return
        }
        #expect(file.path == "/etc/portcullis/logs/audit.jsonl")
        #expect(file.maxSize == 10 * 1024 * 1024 && file.maxAge == .seconds(3600) && file.keep == 3)
        #expect(file.fsyncInterval == .milliseconds(250))
        #expect(http.format == .splunkHEC && http.token == .environment("SPLUNK_TOKEN"))
        #expect(http.batchMaxEvents == 100 && http.batchMaxBytes == 64 * 1024 && http.flushInterval == .seconds(2))
        #expect(http.retryInitialBackoff == .seconds(1) && http.retryMaxBackoff == .seconds(60))
        #expect(http.spoolDirectory == "/etc/portcullis/spool" && http.index == "security" && http.gzip)
        #expect(syslog.address == HostPort(host: "logs.example.com", port: 6514) && syslog.tls)
        #expect(syslog.appName == "gate" && syslog.facility == 10)
    }

    @Test func theHeadFileDefaultsToTheFirstFileSink() {
        let yaml = self.top + "audit:\n  sinks:\n    - { type: stdout }\n    - { type: file, path: /var/log/p/a.jsonl }\n"
        #expect(expectValid(yaml)?.config.audit.effectiveHeadFile == "/var/log/p/a.jsonl.head")
        let stdoutOnly = self.top + "audit:\n  sinks: [{ type: stdout }]\n"
        #expect(expectValid(stdoutOnly)?.config.audit.effectiveHeadFile == nil)
    }

    @Test func anUnknownSinkTypeIsNamedWithASuggestion() {
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: fille, path: /x }\n",
            line: 8,
            column: 15,
            "audit.sinks[0].type: unknown sink type 'fille' (did you mean 'file'?)"
        )
    }

    @Test func aSinkListMayNotBeEmpty() {
        expectDiagnostic(self.top + "audit:\n  sinks: []\n", line: 7, column: 10, "at least one sink is required")
    }

    @Test func unknownKeysInASinkAreErrors() {
        // A typo must never silently change where the trail goes.
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: file, path: /x, rotat: { keep: 2 } }\n",
            line: 8,
            column: 31,
            "unknown key 'rotat'"
        )
    }

    @Test func onOverflowIsFailClosedOrDrop() {
        expectDiagnostic(
            self.top + "audit:\n  on_overflow: block\n  sinks: [{ type: stdout }]\n",
            line: 7,
            column: 16,
            "audit.on_overflow: expected fail_closed or drop, got 'block'"
        )
    }

    @Test func plainSyslogOnlyToALoopbackRelay() {
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: syslog, address: \"10.1.2.3:514\", tls: false }\n",
            line: 8,
            column: 53,
            "plain TCP is only allowed to a loopback relay"
        )
        let local = self.top + "audit:\n  sinks:\n    - { type: syslog, address: \"127.0.0.1:514\", tls: false }\n"
        #expect(expectValid(local) != nil)
    }

    @Test func oneTokenSourceAtATime() {
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: http, url: \"https://l.example.com/x\", token_file: t, token_env: T }\n",
            line: 8,
            column: 53,
            "give token_file or token_env, not both"
        )
    }

    @Test func twoFileSinksMayNotShareAPath() {
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: file, path: /x/a.jsonl }\n    - { type: file, path: /x/a.jsonl }\n",
            line: 9,
            column: 7,
            "/x/a.jsonl is already written by the sink at line 8"
        )
    }

    @Test func httpSinksNeedAnHTTPURL() {
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: http, url: \"ftp://l.example.com/x\" }\n",
            line: 8,
            column: 26,
            "scheme must be http or https"
        )
        expectDiagnostic(
            self.top + "audit:\n  sinks:\n    - { type: http, url: \"https://l.example.com/x\", format: lokki }\n",
            line: 8,
            column: 61,
            "unknown format 'lokki' (did you mean 'loki'?)"
        )
    }
}
