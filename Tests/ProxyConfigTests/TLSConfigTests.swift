import Foundation
import ProxyModel
import Testing

@testable import ProxyConfig

/// `min_version` on listener TLS, and `tls:` of an https upstream (TLS issue).
@Suite("tls settings")
struct TLSConfigTests {
    /// `version: 1`, `listeners:` and one https listener whose `tls:` mapping ends with `extra`
    /// (its lines from line 7).
    func listener(_ extra: String...) -> String {
        """
        version: 1
        listeners:
          - name: web
            address: "0.0.0.0:443"
            protocol: https
            tls:
              certificates: [ { certificate: a.pem, private_key: k.pem } ]

        """ + extra.map { "      \($0)\n" }.joined()
    }

    /// `head` plus one public route on `web` whose upstream mapping has `endpoints` (line 15) and
    /// `tls:` (line 16) with `lines` from line 17 (keys at column 9).
    func upstream(endpoint: String = "https://api.internal:8443", _ lines: String...) -> String {
        head + """
              - name: r
                listener: web
                match: {}
                public: true
                upstream:
                  endpoints: ["\(endpoint)"]
                  tls:

            """ + lines.map { "        \($0)\n" }.joined()
    }

    // MARK: - listener min_version

    @Test func listenerMinimumVersionDefaultsToTLS12() throws {
        let loaded = try #require(expectValid(self.listener()))
        #expect(loaded.config.listeners[0].tls?.minVersion == .tls12)
    }

    @Test(arguments: [("\"1.3\"", TLSMinimumVersion.tls13), ("1.3", .tls13), ("\"1.2\"", .tls12), ("1.2", .tls12)])
    func listenerMinimumVersion(text: String, expected: TLSMinimumVersion) throws {
        let loaded = try #require(expectValid(self.listener("min_version: \(text)")))
        #expect(loaded.config.listeners[0].tls?.minVersion == expected)
    }

    @Test(arguments: ["1.1", "\"1.0\"", "tls13", "1.30"])
    func listenerMinimumVersionRejected(text: String) {
        expectDiagnostic(
            self.listener("min_version: \(text)"),
            line: 8,
            column: 20,
            "listeners[0].tls.min_version: expected \"1.2\" or \"1.3\""
        )
    }

    @Test func listenerMinimumVersionTypo() {
        expectDiagnostic(
            self.listener("min_versoin: \"1.3\""),
            line: 8,
            column: 7,
            "unknown key 'min_versoin' in listeners[0].tls (did you mean 'min_version'?)"
        )
    }

    // MARK: - upstream tls

    @Test func upstreamTLSParsed() throws {
        let yaml = self.upstream(
            "ca: certs/upstream-ca.pem",
            "client_certificate: certs/proxy.pem",
            "client_key: /secrets/proxy-key.pem",
            "server_name: API.example.com",
            "min_version: \"1.3\""
        )
        let loaded = try #require(expectValid(yaml))
        #expect(loaded.warnings.isEmpty)
        let upstream = loaded.config.routes[0].upstream
        #expect(upstream.scheme == .https)
        #expect(upstream.endpoints == [HostPort(host: "api.internal", port: 8443)])
        #expect(
            upstream.tls
                == UpstreamTLSConfig(
                    caFile: "/etc/portcullis/certs/upstream-ca.pem",
                    clientCertificate: "/etc/portcullis/certs/proxy.pem",
                    clientKey: "/secrets/proxy-key.pem",
                    serverName: "api.example.com",
                    minVersion: .tls13,
                    insecureSkipVerify: false
                )
        )
    }

    @Test func upstreamWithoutTLSSectionHasNone() throws {
        let loaded = try #require(
            expectValid(head + "  - { name: r, listener: web, match: {}, public: true, upstream: \"https://a\" }\n")
        )
        #expect(loaded.config.routes[0].upstream.tls == nil)
    }

    @Test func emptyTLSSectionMeansDefaults() throws {
        let yaml =
            head
            + "  - { name: r, listener: web, match: {}, public: true,"
            + " upstream: { endpoints: [\"https://a\"], tls: {} } }\n"
        let loaded = try #require(expectValid(yaml))
        #expect(loaded.config.routes[0].upstream.tls == UpstreamTLSConfig())
        #expect(loaded.config.routes[0].upstream.tls?.minVersion == .tls12)
        #expect(loaded.config.routes[0].upstream.tls?.insecureSkipVerify == false)
    }

    @Test func tlsWithHTTPEndpointsIsAnError() {
        expectDiagnostic(
            self.upstream(endpoint: "http://api.internal:8080", "ca: ca.pem"),
            line: 16,
            column: 7,
            "routes[0].upstream.tls: only valid with https endpoints (this upstream is http)"
        )
    }

    @Test func clientCertificateNeedsKey() {
        expectDiagnostic(
            self.upstream("client_certificate: proxy.pem"),
            line: 17,
            column: 9,
            "routes[0].upstream.tls: 'client_certificate' needs 'client_key' (give both or neither)"
        )
        expectDiagnostic(
            self.upstream("ca: ca.pem", "client_key: proxy-key.pem"),
            line: 18,
            column: 9,
            "routes[0].upstream.tls: 'client_key' needs 'client_certificate' (give both or neither)"
        )
    }

    @Test(arguments: ["10.0.0.1", "\"::1\"", "\"api internal\"", "api.internal:443"])
    func serverNameMustBeADNSName(text: String) {
        expectDiagnostic(
            self.upstream("server_name: \(text)"),
            line: 17,
            column: 22,
            "routes[0].upstream.tls.server_name: "
        )
    }

    @Test func insecureSkipVerifyIsAWarning() throws {
        let yaml = self.upstream("insecure_skip_verify: true")
        let diagnostic = expectDiagnostic(
            yaml,
            line: 17,
            column: 9,
            "routes[0].upstream.tls.insecure_skip_verify: the upstream's certificate is not verified",
            severity: .warning
        )
        #expect(diagnostic != nil)
        let loaded = try #require(expectValid(yaml))
        #expect(loaded.config.routes[0].upstream.tls?.insecureSkipVerify == true)
    }

    @Test func insecureSkipVerifyFalseIsQuiet() throws {
        let loaded = try #require(expectValid(self.upstream("insecure_skip_verify: false")))
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.config.routes[0].upstream.tls?.insecureSkipVerify == false)
    }

    @Test func insecureSkipVerifyMustBeABoolean() {
        expectDiagnostic(
            self.upstream("insecure_skip_verify: \"yes\""),
            line: 17,
            column: 31,
            "routes[0].upstream.tls.insecure_skip_verify: expected true or false"
        )
    }

    @Test func caAndInsecureSkipVerifyContradict() {
        expectDiagnostic(
            self.upstream("ca: ca.pem", "insecure_skip_verify: true"),
            line: 17,
            column: 9,
            "routes[0].upstream.tls: 'ca' and 'insecure_skip_verify: true' contradict each other"
        )
    }

    @Test func upstreamMinimumVersionRejected() {
        expectDiagnostic(
            self.upstream("min_version: \"1.1\""),
            line: 17,
            column: 22,
            "routes[0].upstream.tls.min_version: expected \"1.2\" or \"1.3\", got '1.1'"
        )
    }

    @Test func unknownUpstreamTLSKey() {
        expectDiagnostic(
            self.upstream("server_nam: api.example.com"),
            line: 17,
            column: 9,
            "unknown key 'server_nam' in routes[0].upstream.tls (did you mean 'server_name'?)"
        )
    }

    @Test func upstreamTLSMustBeAMapping() {
        expectDiagnostic(
            head
                + "  - { name: r, listener: web, match: {}, public: true,"
                + " upstream: { endpoints: [\"https://a\"], tls: [ca.pem] } }\n",
            line: 10,
            column: 99,
            "routes[0].upstream.tls: expected a mapping, got a list"
        )
    }

    @Test func upstreamTLSFilesAreChecked() throws {
        let folder = try TemporaryDirectory()
        try folder.write("ca.pem")
        expectDiagnostic(
            self.upstream("ca: ca.pem", "client_certificate: proxy.pem", "client_key: ca.pem"),
            line: 18,
            column: 29,
            "routes[0].upstream.tls.client_certificate: file not found: \(folder.path)/proxy.pem",
            checkFiles: true,
            baseDirectory: folder.path
        )
    }
}
