import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("listeners")
struct ListenerTests {
    /// `version: 1`, `listeners:` and then `item` (its lines start at line 3).
    func policy(_ item: String) -> String { "version: 1\nlisteners:\n" + item }

    @Test func missingRequiredKeys() {
        let yaml = self.policy("  - name: web\n    tls: {}\n")
        expectDiagnostic(yaml, line: 3, column: 5, "listener 'web': missing required key 'address'")
        expectDiagnostic(yaml, line: 3, column: 5, "listener 'web': missing required key 'protocol'")
        expectDiagnostic(
            self.policy("  - address: \"0.0.0.0:80\"\n    protocol: http\n"),
            line: 3,
            column: 5,
            "listeners[0]: missing required key 'name'"
        )
    }

    @Test func invalidName() {
        expectDiagnostic(
            self.policy("  - { name: \"-web\", address: \"0.0.0.0:80\", protocol: http }\n"),
            line: 3,
            column: 13,
            "listeners[0].name: invalid name '-web'"
        )
    }

    @Test func duplicateName() {
        expectDiagnostic(
            self.policy(
                "  - { name: web, address: \"0.0.0.0:80\", protocol: http }\n  - { name: web, address: \"0.0.0.0:81\", protocol: http }\n"
            ),
            line: 4,
            column: 13,
            "duplicate listener name 'web' (first at line 3, column 13)"
        )
    }

    @Test func duplicateAddress() {
        expectDiagnostic(
            self.policy(
                "  - { name: a, address: \"[::1]:80\", protocol: http }\n  - { name: b, address: \"[0::1]:80\", protocol: http }\n"
            ),
            line: 4,
            column: 25,
            "listener 'b': address [0::1]:80 is already used by listener 'a' (line 3)"
        )
    }

    @Test(arguments: [
        ("0.0.0.0", "missing port (expected host:port)"),
        ("0.0.0.0:0", "port '0' is not a number from 1 to 65535"),
        ("0.0.0.0:65536", "port '65536' is not a number from 1 to 65535"),
        ("0.0.0.0:http", "port 'http' is not a number from 1 to 65535"),
        (":8080", "missing host (use 0.0.0.0 or [::] for every interface)"),
        ("::1:8080", "an IPv6 address needs brackets"),
        ("[::1]", "missing port (expected [IPv6]:port)"),
        ("[::g]:80", "'::g' is not an IPv6 address"),
        ("bad host:80", "'bad host' is neither an IP address nor a host name"),
    ])
    func badAddress(address: String, problem: String) {
        expectDiagnostic(
            self.policy("  - name: web\n    address: \"\(address)\"\n    protocol: http\n"),
            line: 4,
            column: 14,
            "listeners[0].address: invalid address '\(address)': \(problem)"
        )
    }

    @Test func addressParsing() throws {
        let yaml = self.policy(
            """
              - { name: a, address: "0.0.0.0:8080", protocol: http }
              - { name: b, address: "[::]:8080", protocol: http }
              - { name: c, address: "[2001:db8::1]:443", protocol: http }
              - { name: d, address: "localhost:9901", protocol: admin }

            """
        )
        let loaded = try #require(expectValid(yaml))
        #expect(
            loaded.config.listeners.map(\.address) == [
                HostPort(host: "0.0.0.0", port: 8080), HostPort(host: "::", port: 8080),
                HostPort(host: "2001:db8::1", port: 443), HostPort(host: "localhost", port: 9901),
            ]
        )
        #expect(loaded.config.listeners[2].address.description == "[2001:db8::1]:443")
        #expect(loaded.config.listeners[3].protocolKind == .admin)
    }

    @Test func unknownProtocolWithSuggestion() {
        expectDiagnostic(
            self.policy("  - { name: web, address: \"0.0.0.0:80\", protocol: htps }\n"),
            line: 3,
            column: 51,
            "listeners[0].protocol: unknown protocol 'htps' (expected http, https, admin or postgres); did you mean 'https'?"
        )
    }

    @Test func httpsNeedsTLS() {
        expectDiagnostic(
            self.policy("  - { name: web, address: \"0.0.0.0:443\", protocol: https }\n"),
            line: 3,
            column: 52,
            "listener 'web': protocol https needs a 'tls' section"
        )
    }

    @Test func tlsOnlyWithHTTPS() {
        expectDiagnostic(
            self.policy(
                "  - name: web\n    address: \"0.0.0.0:80\"\n    protocol: http\n    tls: { certificates: [ { certificate: a.pem, private_key: k.pem } ] }\n"
            ),
            line: 6,
            column: 5,
            "listener 'web': 'tls' is only valid with protocol https (this listener is http)"
        )
    }

    @Test func listWhereMappingExpected() {
        expectDiagnostic(
            self.policy(
                "  - name: web\n    address: \"0.0.0.0:443\"\n    protocol: https\n    tls:\n      - certificate: a.pem\n"
            ),
            line: 7,
            column: 7,
            "listeners[0].tls: expected a mapping, got a list"
        )
    }

    @Test func emptyCertificates() {
        expectDiagnostic(
            self.policy(
                "  - name: web\n    address: \"0.0.0.0:443\"\n    protocol: https\n    tls: { certificates: [] }\n"
            ),
            line: 6,
            column: 26,
            "listeners[0].tls.certificates: at least one certificate is required"
        )
    }

    @Test func certificateNeedsKey() {
        expectDiagnostic(
            self.policy(
                "  - name: web\n    address: \"0.0.0.0:443\"\n    protocol: https\n    tls: { certificates: [ { certificate: a.pem } ] }\n"
            ),
            line: 6,
            column: 28,
            "listeners[0].tls.certificates[0]: missing required key 'private_key'"
        )
    }

    let tlsListener =
        "  - name: web\n    address: \"0.0.0.0:443\"\n    protocol: https\n    tls:\n      certificates: [ { certificate: a.pem, private_key: k.pem } ]\n"

    @Test func clientAuthNeedsClientCA() {
        expectDiagnostic(
            self.policy(self.tlsListener + "      client_auth: required\n"),
            line: 8,
            column: 7,
            "listeners[0].tls.client_auth: only valid together with 'client_ca'"
        )
    }

    @Test func crlNeedsClientCA() {
        expectDiagnostic(
            self.policy(self.tlsListener + "      crl: revoked.pem\n"),
            line: 8,
            column: 7,
            "listeners[0].tls.crl: only valid together with 'client_ca'"
        )
    }

    @Test func clientAuthValue() {
        expectDiagnostic(
            self.policy(self.tlsListener + "      client_ca: ca.pem\n      client_auth: always\n"),
            line: 9,
            column: 20,
            "listeners[0].tls.client_auth: expected 'optional' or 'required', got 'always'"
        )
    }

    @Test func relativeFilesResolveAgainstThePolicyFolder() throws {
        let loaded = try #require(expectValid(self.policy(self.tlsListener + "      client_ca: ../ca/./clients.pem\n")))
        let tls = try #require(loaded.config.listeners.first?.tls)
        #expect(
            tls.certificates == [
                CertificatePair(certificate: "/etc/portcullis/a.pem", privateKey: "/etc/portcullis/k.pem")
            ]
        )
        #expect(tls.clientCA == "/etc/ca/clients.pem")
        #expect(tls.clientAuth == .optional)
    }

    @Test func missingFileWithCheckFiles() throws {
        let folder = try TemporaryDirectory()
        try folder.write("a.pem")
        let yaml = self.policy(self.tlsListener)
        expectDiagnostic(
            yaml,
            line: 7,
            column: 58,
            "listeners[0].tls.certificates[0].private_key: file not found: \(folder.path)/k.pem",
            checkFiles: true,
            baseDirectory: folder.path
        )
        // The certificate exists: no diagnostic for it.
        #expect(
            !diagnostics(yaml, checkFiles: true, baseDirectory: folder.path).contains { $0.message.contains("a.pem") }
        )
    }

    @Test func missingFileIsFineWithoutCheckFiles() throws {
        let folder = try TemporaryDirectory()
        let loaded = try #require(
            expectValid(self.policy(self.tlsListener), checkFiles: false, baseDirectory: folder.path)
        )
        #expect(loaded.config.listeners[0].tls?.certificates[0].privateKey == "\(folder.path)/k.pem")
    }

    @Test func directoryIsNotAFile() throws {
        let folder = try TemporaryDirectory()
        try folder.write("a.pem/inside")
        try folder.write("k.pem")
        expectDiagnostic(
            self.policy(self.tlsListener),
            line: 7,
            column: 38,
            "listeners[0].tls.certificates[0].certificate: is a directory, not a file: \(folder.path)/a.pem",
            checkFiles: true,
            baseDirectory: folder.path
        )
    }

    @Test func stringWhereBoolExpected() {
        expectDiagnostic(
            self.policy("  - { name: web, address: \"0.0.0.0:80\", protocol: http, proxy_protocol: \"true\" }\n"),
            line: 3,
            column: 73,
            "listeners[0].proxy_protocol: expected true or false, got a string"
        )
    }

    @Test func yaml11BooleansAreRefused() {
        expectDiagnostic(
            self.policy("  - { name: web, address: \"0.0.0.0:80\", protocol: http, proxy_protocol: yes }\n"),
            line: 3,
            column: 73,
            "listeners[0].proxy_protocol: expected true or false, got 'yes'"
        )
    }

    @Test func invalidTrustedProxy() {
        expectDiagnostic(
            self.policy(
                "  - { name: web, address: \"0.0.0.0:80\", protocol: http, trusted_proxies: [10.0.0.0/8, 10.0.0.0/40] }\n"
            ),
            line: 3,
            column: 87,
            "listeners[0].trusted_proxies[1]: invalid CIDR '10.0.0.0/40'"
        )
    }

    @Test func trustedProxiesMustBeAList() {
        expectDiagnostic(
            self.policy("  - { name: web, address: \"0.0.0.0:80\", protocol: http, trusted_proxies: 10.0.0.0/8 }\n"),
            line: 3,
            column: 74,
            "listeners[0].trusted_proxies: expected a list of strings, got a string"
        )
    }

    @Test(arguments: [
        ("max_connections: 0", 24, "limits.max_connections: must be at least 1, got 0"),
        ("max_header_bytes: 512", 25, "limits.max_header_bytes: must be between 1KiB and 1MiB, got 512 bytes"),
        ("max_header_bytes: 2MiB", 25, "limits.max_header_bytes: must be between 1KiB and 1MiB, got 2097152 bytes"),
        ("max_header_count: 1001", 25, "limits.max_header_count: must be between 1 and 1000, got 1001"),
        ("header_read_timeout: 0s", 28, "limits.header_read_timeout: must be greater than zero"),
        ("idle_timeout: 1 minute", 21, "limits.idle_timeout: invalid duration '1 minute'"),
        ("max_requests_per_connection: -1", 36, "limits.max_requests_per_connection: must be at least 1, got -1"),
        (
            "max_conections: 10", 7,
            "unknown key 'max_conections' in listeners[0].limits (did you mean 'max_connections'?)"
        ),
    ])
    func badLimits(line: String, column: Int, message: String) {
        expectDiagnostic(
            self.policy("  - name: web\n    address: \"0.0.0.0:80\"\n    protocol: http\n    limits:\n      \(line)\n"),
            line: 7,
            column: column,
            message
        )
    }

    @Test func limitsAndDefaults() throws {
        let yaml = self.policy(
            """
              - name: web
                address: "0.0.0.0:80"
                protocol: http
                proxy_protocol: true
                trusted_proxies: [10.0.0.0/8, "2001:db8::/32"]
                limits: { max_connections: 500, max_header_bytes: 64KiB, max_header_count: 50, header_read_timeout: 5s, idle_timeout: 2m, max_requests_per_connection: 10 }
              - { name: plain, address: "0.0.0.0:81", protocol: http }

            """
        )
        let listeners = try #require(expectValid(yaml)).config.listeners
        #expect(listeners[0].proxyProtocol)
        #expect(listeners[0].trustedProxies == [CIDR.parse("10.0.0.0/8")!, CIDR.parse("2001:db8::/32")!])
        #expect(
            listeners[0].limits
                == ListenerLimits(
                    maxConnections: 500,
                    maxHeaderBytes: 65_536,
                    maxHeaderCount: 50,
                    headerReadTimeout: .seconds(5),
                    idleTimeout: .seconds(120),
                    maxRequestsPerConnection: 10
                )
        )
        #expect(listeners[0].location == ProxyModel.SourceLocation(file: "policy.yaml", line: 3, column: 5))
        #expect(listeners[1].limits == ListenerLimits())
        #expect(listeners[1].proxyProtocol == false)
        #expect(listeners[1].trustedProxies.isEmpty)
    }
}
