import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("Top level, YAML syntax, duplicate keys, wildcards")
struct TopLevelTests {
    let listener = """
        listeners:
          - { name: web, address: "0.0.0.0:8080", protocol: http }
        """

    @Test func unknownTopLevelKeyWithSuggestion() {
        expectDiagnostic(
            "version: 1\n\(self.listener)\nroute:\n  - name: a\n",
            line: 4,
            column: 1,
            "unknown key 'route' at the top level (did you mean 'routes'?)"
        )
    }

    @Test func unknownTopLevelKeyWithoutSuggestion() {
        let found = expectDiagnostic(
            "version: 1\n\(self.listener)\ncolour: blue\n",
            line: 4,
            column: 1,
            "unknown key 'colour'"
        )
        #expect(found?.message.contains("did you mean") == false)
    }


    @Test func definitionsMustBeAMapping() {
        expectDiagnostic(
            "version: 1\n\(self.listener)\ndefinitions: [admins]\n",
            line: 4,
            column: 14,
            "definitions: expected a mapping of names to condition sets, got a list"
        )
    }

    @Test func missingVersion() {
        expectDiagnostic("\(self.listener)\n", line: 1, column: 1, "missing required key 'version'")
    }

    @Test func unsupportedVersion() {
        expectDiagnostic("version: 2\n\(self.listener)\n", line: 1, column: 10, "version: unsupported version 2")
    }

    @Test func versionMustBeAnInteger() {
        expectDiagnostic(
            "version: \"1\"\n\(self.listener)\n",
            line: 1,
            column: 10,
            "version: expected an integer, got a string"
        )
    }

    @Test func missingListeners() {
        expectDiagnostic("version: 1\nroutes: []\n", line: 1, column: 1, "missing required key 'listeners'")
    }

    @Test func emptyListeners() {
        expectDiagnostic(
            "version: 1\nlisteners: []\n",
            line: 2,
            column: 12,
            "listeners: at least one listener is required"
        )
    }

    @Test func stringWhereListExpected() {
        expectDiagnostic(
            "version: 1\nlisteners: web\n",
            line: 2,
            column: 12,
            "listeners: expected a list, got a string"
        )
    }

    @Test func rootMustBeAMapping() {
        expectDiagnostic("- version: 1\n", line: 1, column: 1, "policy file: expected a mapping, got a list")
    }

    @Test func emptyFile() {
        expectDiagnostic("# nothing here\n", line: 1, column: 1, "the policy file is empty")
    }

    @Test func serverSettings() throws {
        let loaded = try #require(
            expectValid(
                "version: 1\n\(self.listener)\nserver: { instance_id: eu-1, shutdown_grace_period: 45s, reload_poll_interval: 0 }\n"
            )
        )
        #expect(
            loaded.config.server
                == ServerSettings(instanceID: "eu-1", shutdownGracePeriod: .seconds(45), reloadPollInterval: .zero)
        )
        let defaults = try #require(expectValid("version: 1\n\(self.listener)\n"))
        #expect(
            defaults.config.server
                == ServerSettings(instanceID: nil, shutdownGracePeriod: .seconds(30), reloadPollInterval: .seconds(2))
        )
    }

    @Test func serverUnknownKeyAndBadDuration() {
        let yaml = "version: 1\n\(self.listener)\nserver:\n  shutdown_grace: 10s\n  reload_poll_interval: soon\n"
        expectDiagnostic(
            yaml,
            line: 5,
            column: 3,
            "unknown key 'shutdown_grace' in server (did you mean 'shutdown_grace_period'?)"
        )
        expectDiagnostic(yaml, line: 6, column: 25, "server.reload_poll_interval: invalid duration 'soon'")
    }

    // MARK: - YAML itself

    @Test func yamlSyntaxErrorHasALocation() {
        let found = expectDiagnostic(
            "version: 1\n\(self.listener)\nroutes:\n  - name: a\n   bad: [\n",
            line: 6,
            column: 4,
            "YAML syntax error"
        )
        #expect(found?.description.hasPrefix("policy.yaml:6:4: error: YAML syntax error:") == true)
    }

    @Test func yamlUnclosedFlowSequence() {
        expectDiagnostic(
            "version: 1\nlisteners: [\n",
            line: 3,
            column: 1,
            "YAML syntax error: did not find expected node content"
        )
    }

    @Test func duplicateKeyReportedAtSecondOccurrence() {
        expectDiagnostic(
            "version: 1\n\(self.listener)\nversion: 1\n",
            line: 4,
            column: 1,
            "duplicate key 'version' at the top level (first at line 1, column 1)"
        )
    }

    @Test func duplicateKeysInFlowAndBlockMappingsAreAllReported() {
        let yaml = """
            version: 1
            listeners:
              - name: web
                address: "0.0.0.0:80"
                protocol: http
                name: web2
                name: web3
              - { name: x, address: "[::1]:80", protocol: http, protocol: https }
            """
        let found = diagnostics(yaml)
        #expect(found.map(\.location.line) == [6, 7, 8])
        #expect(found.map(\.location.column) == [5, 5, 53])
        #expect(found[0].message == "duplicate key 'name' in listener 'web' (first at line 3, column 5)")
        #expect(found[2].message.contains("duplicate key 'protocol' in listener 'x'"))
    }

    @Test func duplicateQuotedKey() {
        expectDiagnostic(
            "version: 1\n\"version\": 1\n\(self.listener)\n",
            line: 2,
            column: 1,
            "duplicate key 'version'"
        )
    }

    @Test func crlfLineEndingsAndByteOrderMarkKeepLocations() {
        let yaml =
            "\u{FEFF}version: 1\r\n\(self.listener.replacing("\n", with: "\r\n"))\r\nroutes:\r\n  - { name: a, listener: web, match: { host: *.a.com }, upstream: \"http://a\", public: true }\r\nversion: 1\r\n"
        let found = diagnostics(yaml)
        #expect(found.map { [$0.location.line, $0.location.column] } == [[5, 46], [6, 1]], "\(found)")
        #expect(found.first?.message.hasPrefix("unquoted wildcard '*.a.com'") == true)
        #expect(found.last?.message.hasPrefix("duplicate key 'version'") == true)
    }

    @Test func secondDocumentIsAnError() {
        expectDiagnostic(
            "version: 1\n\(self.listener)\n---\nversion: 1\n",
            line: 4,
            column: 1,
            "but found another document"
        )
    }

    // MARK: - Unquoted wildcards

    @Test func unquotedWildcardHost() {
        let found = expectDiagnostic(
            head
                + "  - name: a\n    listener: web\n    match: { host: *.example.com, path: /api/* }\n    upstream: http://a\n    public: true\n",
            line: 12,
            column: 20,
            "unquoted wildcard '*.example.com'"
        )
        #expect(
            found?.message
                == "unquoted wildcard '*.example.com': quote it (\"*.example.com\"); an unquoted * starts a YAML alias"
        )
    }

    @Test func unquotedWildcardInBlockMappingAndList() {
        let yaml =
            head + """
                  - name: a
                    listener: web
                    match:
                      host: *.example.com
                    upstream: http://a
                    public: true
                    rules:
                      - allow: { methods: [GET], paths: [/x/*, *.y] }
                      - deny:
                          groups:
                            - *.z
                """
        let found = diagnostics(yaml).filter { $0.message.hasPrefix("unquoted wildcard") }
        #expect(found.map { [$0.location.line, $0.location.column] } == [[13, 13], [17, 48], [20, 15]])
    }

    @Test func wildcardScanSkipsQuotesCommentsPathsAndBlockScalars() {
        let yaml =
            head + """
                  - name: a   # *.not-a-value
                    listener: web
                    match: { host: "*.example.com", path: /api/* }
                    upstream: http://a
                    auth: { issuers: [corp] }
                    identity_headers:
                      X-Note: 'it''s *.fine'
                      X-Other: >
                        *.folded text
                    rules:
                      - allow: { paths: [ /*, "/b/*" ] }
                """
        let found = diagnostics(yaml)
        #expect(!found.contains { $0.message.contains("unquoted wildcard") }, "\(found)")
    }

    @Test func realAliasesStillWork() throws {
        let yaml =
            head + """
                  - name: a
                    listener: web
                    match: { host: api.example.com }
                    upstream: &backend http://backend:8080
                    public: true
                  - name: b
                    listener: web
                    match: { host: b.example.com }
                    upstream: *backend
                    public: true
                """
        let loaded = try #require(expectValid(yaml))
        #expect(
            loaded.config.routes.map(\.upstream.endpoints) == [
                [HostPort(host: "backend", port: 8080)], [HostPort(host: "backend", port: 8080)],
            ]
        )
    }

    @Test func undefinedAliasGetsTheWildcardHint() {
        // An anchor used before it is defined: found by YAML, reported with the hint.
        let found = diagnostics("version: 1\nlisteners: [ *later ]\nother: &later x\n")
        #expect(
            found.contains {
                $0.location.line == 2 && $0.location.column == 14 && $0.message.contains("unquoted wildcard '*later'")
            }
        )
    }

    // MARK: - Several problems

    @Test func allProblemsAreReportedInFileOrder() {
        let yaml = """
            version: 1
            listeners:
              - { name: web, address: "0.0.0.0:80", protocol: htp }
              - { name: web, address: "0.0.0.0:81", protocol: http }
            routes:
              - name: a
                listener: web
                match: { host: "a.example.com" }
                upsteam: http://a
                public: true
              - name: b
                listener: web
                match: { host: "b.example.com" }
                upstream: ftp://b
            extra: 1
            """
        let found = diagnostics(yaml)
        #expect(found.count == 7, "\(found)")
        #expect(found.map(\.location.line) == [3, 4, 6, 9, 11, 14, 15])
        #expect(found.map(\.location.line) == found.map(\.location.line).sorted())
        #expect(found[0].message.contains("unknown protocol 'htp'"))
        #expect(found[1].message.contains("duplicate listener name 'web'"))
        #expect(found[2].message.contains("missing required key 'upstream'"))
        #expect(found[3].message.contains("unknown key 'upsteam'"))
        #expect(found[4].message.contains("has neither 'auth' nor 'public: true'"))
        #expect(found[5].message.contains("scheme 'ftp'"))
        #expect(found[6].message.contains("unknown key 'extra'"))
    }

    @Test func errorsComeBeforeWarningsAndWarningsAreKeptOnFailure() throws {
        let yaml =
            head + """
                  - name: a
                    listener: web
                    match: { host: a.example.com }
                    upstream: http://a
                    public: true
                    rules:
                      - allow: { groups: [admins] }
                extra: 1
                """
        guard case .failure(let error) = parse(yaml) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.diagnostics.map(\.severity) == [.error, .warning])
        #expect(error.description.contains("policy.yaml:17:1: error: unknown key 'extra'"))
    }
}
