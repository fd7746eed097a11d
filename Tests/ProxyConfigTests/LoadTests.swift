import Foundation
import PolicyCore
import ProxyModel
import Testing

@testable import ProxyConfig

@Suite("loading from disk, the full example")
struct LoadTests {
    /// The sketch from DESIGN.md "The policy file", adapted to this version: no `audit:` yet.
    static let example = """
        version: 1
        listeners:
          - name: web
            address: 0.0.0.0:8443
            protocol: https                 # https | http | postgres | admin
            tls:
              certificates:                 # chosen by SNI; the first is the default
                - { certificate: certs/airflow.pem, private_key: certs/airflow-key.pem }
                - { certificate: certs/api.pem, private_key: certs/api-key.pem }
              client_ca: certs/clients-ca.pem   # optional mTLS
              client_auth: optional             # optional | required
            proxy_protocol: false           # PROXY v1/v2 from a load balancer
            trusted_proxies: [10.0.0.0/8]   # whose X-Forwarded-For is believed
          - name: ops
            address: 127.0.0.1:9901
            protocol: admin                 # /healthz, /readyz (later /metrics)

        issuers:
          - name: corp
            issuer: https://corp.okta.com/oauth2/default      # OIDC discovery
            audiences: [airflow]
            clock_skew: 60s
            groups_claim: groups
          - name: local
            issuer: https://portcullis.local
            jwks_file: certs/jwks.json                        # static keys, no discovery

        routes:
          - name: airflow-ui
            listener: web
            match: { host: airflow.example.com, path: /* }
            upstream: http://airflow-webserver:8080          # or a list of endpoints
            auth: { issuers: [corp], audiences: [airflow] }   # audiences per route: a token for one service opens no other
            identity_headers: { X-Portcullis-User: "${email}", X-Portcullis-Groups: "${groups}" }
            rules:
              - allow: { groups: [airflow-admins] }
              - allow: { groups: [airflow-viewers], methods: [GET, HEAD] }

          - name: batch-api
            listener: web
            match: { host: "*.internal.example.com", path: /jobs/* }   # quote wildcards: * starts a YAML alias
            upstream: https://jobs.internal:8443
            auth: { client_cert: required }                  # identity from the mTLS certificate
            rules:
              - allow: { client_cert: { uri_sans: ["spiffe://example.com/airflow/worker"] } }

          - name: health
            listener: web
            match: { path: /healthz }
            upstream: http://airflow-webserver:8080
            public: true                                     # no identity; must be said explicitly

        """

    static let files = [
        "certs/airflow.pem", "certs/airflow-key.pem", "certs/api.pem", "certs/api-key.pem", "certs/clients-ca.pem",
        "certs/jwks.json",
    ]

    @Test func fullExampleParsesIntoTypedValues() throws {
        let folder = try TemporaryDirectory()
        for file in Self.files { try folder.write(file) }
        let path = try folder.write("policy.yaml", Self.example)

        let result = ConfigLoader.load(path: path)
        guard case .success(let loaded) = result else {
            Issue.record("expected success, got \(result)")
            return
        }
        let certs = folder.path + "/certs/"
        #expect(loaded.path == path)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.digest.count == 64)
        let config = loaded.config
        #expect(config.version == 1)
        #expect(config.server == ServerSettings())

        #expect(
            config.listeners == [
                ListenerConfig(
                    name: "web",
                    address: HostPort(host: "0.0.0.0", port: 8443),
                    protocolKind: .https,
                    tls: ListenerTLSConfig(
                        certificates: [
                            CertificatePair(certificate: certs + "airflow.pem", privateKey: certs + "airflow-key.pem"),
                            CertificatePair(certificate: certs + "api.pem", privateKey: certs + "api-key.pem"),
                        ],
                        clientCA: certs + "clients-ca.pem",
                        clientAuth: .optional,
                        crl: nil
                    ),
                    proxyProtocol: false,
                    trustedProxies: [CIDR.parse("10.0.0.0/8")!],
                    limits: ListenerLimits(),
                    location: ProxyModel.SourceLocation(file: path, line: 3, column: 5)
                ),
                ListenerConfig(
                    name: "ops",
                    address: HostPort(host: "127.0.0.1", port: 9901),
                    protocolKind: .admin,
                    location: ProxyModel.SourceLocation(file: path, line: 14, column: 5)
                ),
            ]
        )

        #expect(
            config.issuers == [
                IssuerConfig(
                    name: "corp",
                    issuer: "https://corp.okta.com/oauth2/default",
                    audiences: ["airflow"],
                    clockSkew: .seconds(60),
                    groupsClaim: "groups",
                    location: ProxyModel.SourceLocation(file: path, line: 19, column: 5)
                ),
                IssuerConfig(
                    name: "local",
                    issuer: "https://portcullis.local",
                    jwksFile: certs + "jwks.json",
                    location: ProxyModel.SourceLocation(file: path, line: 24, column: 5)
                ),
            ]
        )

        #expect(config.routes.map(\.name) == ["airflow-ui", "batch-api", "health"])
        let ui = config.routes[0]
        #expect(ui.listener == "web")
        #expect(ui.host == .exact("airflow.example.com"))
        #expect(ui.path == .prefix(""))
        #expect(
            ui.upstream == UpstreamConfig(scheme: .http, endpoints: [HostPort(host: "airflow-webserver", port: 8080)])
        )
        #expect(ui.auth == RouteAuthConfig(issuers: ["corp"], audiences: ["airflow"]))
        #expect(
            ui.identityHeaders == [
                IdentityHeader(name: "X-Portcullis-User", template: "${email}"),
                IdentityHeader(name: "X-Portcullis-Groups", template: "${groups}"),
            ]
        )
        #expect(
            ui.rules == [
                Rule(
                    effect: .allow,
                    conditions: [.groups(["airflow-admins"])],
                    location: ProxyModel.SourceLocation(file: path, line: 36, column: 9)
                ),
                Rule(
                    effect: .allow,
                    conditions: [.groups(["airflow-viewers"]), .methods(["GET", "HEAD"])],
                    location: ProxyModel.SourceLocation(file: path, line: 37, column: 9)
                ),
            ]
        )
        let batch = config.routes[1]
        #expect(batch.host == .wildcard(suffix: ".internal.example.com"))
        #expect(batch.path == .prefix("/jobs"))
        #expect(
            batch.upstream == UpstreamConfig(scheme: .https, endpoints: [HostPort(host: "jobs.internal", port: 8443)])
        )
        #expect(batch.auth == RouteAuthConfig(issuers: [], audiences: nil, clientCert: .required))
        #expect(batch.isPublic == false)
        let health = config.routes[2]
        #expect(health.isPublic)
        #expect(health.auth == nil)
        #expect(health.host == .any)
        #expect(health.path == .exact("/healthz"))
        #expect(health.rules.isEmpty)
    }

    @Test func fullExampleReportsMissingFiles() throws {
        let folder = try TemporaryDirectory()
        for file in Self.files where file != "certs/api-key.pem" && file != "certs/jwks.json" { try folder.write(file) }
        let path = try folder.write("policy.yaml", Self.example)
        guard case .failure(let error) = ConfigLoader.load(path: path) else {
            Issue.record("expected a failure")
            return
        }
        #expect(
            error.diagnostics.map(\.description) == [
                "\(path):9:54: error: listeners[0].tls.certificates[1].private_key: file not found: \(folder.path)/certs/api-key.pem",
                "\(path):26:16: error: issuers[1].jwks_file: file not found: \(folder.path)/certs/jwks.json",
            ]
        )
        // Without file checks the same file loads.
        #expect((try? ConfigLoader.load(path: path, options: .init(checkFiles: false)).get()) != nil)
    }

    @Test func digestIsTheSHA256OfTheBytes() throws {
        let folder = try TemporaryDirectory()
        let yaml = "version: 1\nlisteners: [ { name: web, address: \"0.0.0.0:80\", protocol: http } ]\n"
        let path = try folder.write("p.yaml", yaml)
        let loaded = try ConfigLoader.load(path: path).get()
        // printf '%s' "$yaml" | sha256sum
        #expect(loaded.digest == sha256Hex(Data(yaml.utf8)))
        #expect(sha256Hex(Data("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try ConfigLoader.parse(yaml: yaml, file: "x", baseDirectory: "/").get().digest == loaded.digest)
    }

    @Test func unreadablePolicyFile() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/missing.yaml"
        guard case .failure(let error) = ConfigLoader.load(path: path) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.diagnostics.count == 1)
        #expect(error.diagnostics[0].location == ProxyModel.SourceLocation(file: path, line: 1, column: 1))
        #expect(error.diagnostics[0].message.hasPrefix("cannot read policy file: "))
        #expect(error.description.hasPrefix("\(path):1:1: error: cannot read policy file: no such file"))
    }

    @Test func policyFileIsADirectory() throws {
        let folder = try TemporaryDirectory()
        guard case .failure(let error) = ConfigLoader.load(path: folder.path) else {
            Issue.record("expected a failure")
            return
        }
        #expect(error.diagnostics.map(\.message) == ["cannot read policy file: \(folder.path) is a directory"])
    }

    @Test func relativePathsResolveAgainstTheirBase() {
        // Not through `load(path:)` with a changed working directory: that is process-wide and other
        // suites run in parallel in the same process.
        let cwd = "/srv/run"
        #expect(
            ValueSyntax.absolutePath("certs/a.pem", base: "/etc/portcullis", currentDirectory: cwd)
                == "/etc/portcullis/certs/a.pem"
        )
        #expect(
            ValueSyntax.absolutePath("../ca/./c.pem", base: "/etc/portcullis/", currentDirectory: cwd)
                == "/etc/ca/c.pem"
        )
        #expect(ValueSyntax.absolutePath("/abs//x.pem", base: "/etc/portcullis", currentDirectory: cwd) == "/abs/x.pem")
        #expect(
            ValueSyntax.absolutePath("conf/policy.yaml", base: "", currentDirectory: cwd) == "/srv/run/conf/policy.yaml"
        )
        #expect(ValueSyntax.absolutePath("keys.json", base: "conf", currentDirectory: cwd) == "/srv/run/conf/keys.json")
        #expect(ValueSyntax.absolutePath("../../../x", base: "/a", currentDirectory: cwd) == "/x")
    }
}
