import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import ProxyConfig
import ProxyModel
import Testing
import X509

@testable import ProxyTransport

/// TLS termination over real loopback sockets: SNI choice, versions, ALPN, client certificates, CRLs.
@Suite("server TLS")
struct ServerTLSTests {
    // MARK: - SNI and versions

    /// Three certificates from one CA: `a` (default, also 127.0.0.1), `*.b.example.com`, `c.example.com`.
    struct SNIFixture {
        let pki: TestPKI
        let configuration: ListenerTLSConfig

        init() throws {
            self.pki = try TestPKI(serverNames: ["a.example.com", "127.0.0.1"])
            let folder = self.pki.directory
            let authority = try DevCertificateAuthority(
                commonName: "SNI test CA",
                notBefore: Date().addingTimeInterval(-60),
                notAfter: Date().addingTimeInterval(3_600)
            )
            var pairs = [self.pki.serverPair]
            for (name, names) in [("b", ["*.b.example.com"]), ("c", ["c.example.com", "www.c.example.com"])] {
                let issued = try authority.issueServerCertificate(
                    names: names,
                    notBefore: Date().addingTimeInterval(-60),
                    notAfter: Date().addingTimeInterval(3_600)
                )
                let certificate = try folder.write("\(name).pem", issued.certificatePEM())
                let key = try folder.write("\(name)-key.pem", issued.keyPEM)
                pairs.append(CertificatePair(certificate: certificate, privateKey: key))
            }
            self.configuration = ListenerTLSConfig(certificates: pairs)
        }
    }

    @Test(arguments: [
        ("c.example.com", "c.example.com", 2),
        ("C.Example.COM", "c.example.com", 2),
        ("www.c.example.com", "c.example.com", 2),
        ("x.b.example.com", "*.b.example.com", 1),
        ("a.example.com", "a.example.com", 0),
        ("y.x.b.example.com", "a.example.com", 0),  // a wildcard covers one label only
        ("b.example.com", "a.example.com", 0),
        ("unknown.example.net", "a.example.com", 0),
    ])
    func sniChoosesTheCertificate(serverName: String, expectedName: String, expectedIndex: Int) async throws {
        let fixture = try SNIFixture()
        let provider = try await ServerTLSContextProvider(configuration: fixture.configuration, logger: testLogger)
        let server = try await TLSTestServer(provider: provider)
        let client = try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(),
            serverHostname: serverName
        )
        #expect(try await client.echo("hello") == "hello")
        let presented = try await client.serverCertificate()
        #expect(presented.dnsNames.first == expectedName)
        let info = try await server.nextOutcome().get()
        #expect(info.certificateIndex == expectedIndex)
        #expect(info.serverName == ServerCertificateNames.normalize(serverName))
        await client.close()
        try await server.close()
    }

    @Test func noSNIGetsTheDefaultCertificate() async throws {
        let fixture = try SNIFixture()
        let provider = try await ServerTLSContextProvider(configuration: fixture.configuration, logger: testLogger)
        let server = try await TLSTestServer(provider: provider)
        let client = try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(),
            serverHostname: nil
        )
        #expect(try await client.echo("x") == "x")
        #expect(try await client.serverCertificate().dnsNames == ["a.example.com"])
        let info = try await server.nextOutcome().get()
        #expect(info.serverName == nil)
        #expect(info.certificateIndex == 0)
        await client.close()
        try await server.close()
    }

    @Test func connectionInfoIsReportedAsEventAndFuture() async throws {
        let pki = try TestPKI()
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [pki.serverPair]),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        let client = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki),
            serverHostname: "localhost"
        )
        #expect(try await client.handshake() == "http/1.1")
        #expect(try await client.echo("data after the handshake") == "data after the handshake")
        let info = try await server.nextOutcome().get()
        #expect(info.serverName == "localhost")
        #expect(info.applicationProtocol == "http/1.1")
        #expect(info.tlsVersion == .tls13)
        #expect(info.clientCertificate == nil)
        #expect(info.generation == 1)
        #expect(server.infoEvents.withLockedValue { $0 } == [info])
        await client.close()
        try await server.close()
    }

    @Test(arguments: [(TLSVersion.tlsv12, NegotiatedTLSVersion.tls12), (.tlsv13, .tls13)])
    func tls12And13Work(version: TLSVersion, expected: NegotiatedTLSVersion) async throws {
        let pki = try TestPKI()
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [pki.serverPair]),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        let client = try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(minimum: version, maximum: version),
            serverHostname: "localhost"
        )
        #expect(try await client.echo("v") == "v")
        #expect(try await client.negotiatedVersion() == version)
        #expect(try await server.nextOutcome().get().tlsVersion == expected)
        await client.close()
        try await server.close()
    }

    @Test(arguments: [TLSVersion.tlsv1, .tlsv11])
    func oldTLSVersionsAreRefused(version: TLSVersion) async throws {
        let pki = try TestPKI()
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [pki.serverPair]),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        let client = try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(minimum: version, maximum: version),
            serverHostname: "localhost"
        )
        await #expect(throws: (any Error).self) { try await client.handshake() }
        let outcome = try await server.nextOutcome()
        guard case .failure(let error) = outcome else {
            Issue.record("the server accepted \(version)")
            return
        }
        #expect(String(describing: error).contains("UNSUPPORTED_PROTOCOL"))
        await client.close()
        try await server.close()
    }

    @Test func minimumVersion13RefusesTLS12() async throws {
        let pki = try TestPKI()
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [pki.serverPair], minVersion: .tls13),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        let old = try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(minimum: .tlsv12, maximum: .tlsv12),
            serverHostname: "localhost"
        )
        #expect(await old.works() == false)
        #expect(try await server.nextOutcome().failed(with: "UNSUPPORTED_PROTOCOL"))
        let current = try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(),
            serverHostname: "localhost"
        )
        #expect(await current.works())
        #expect(try await server.nextOutcome().get().tlsVersion == .tls13)
        await old.close()
        await current.close()
        try await server.close()
    }

    @Test(arguments: [[UInt8](), [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]])
    func stalledHandshakeIsClosed(sent: [UInt8]) async throws {
        let pki = try TestPKI()
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [pki.serverPair]),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider, handshakeTimeout: .milliseconds(300))
        // A client that connects and sends nothing, or the start of a ClientHello, and then waits.
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: server.port).get()
        // (Under load the server may already have given up before this write: that is fine too.)
        if !sent.isEmpty { try? await client.writeAndFlush(ByteBuffer(bytes: sent)) }
        let outcome = try await server.nextOutcome()
        guard case .failure(let error) = outcome else {
            Issue.record("a stalled handshake was reported as complete")
            return
        }
        #expect(error is TLSHandshakeTimeoutError)
        try await withTimeout { try await client.closeFuture.get() }
        #expect(client.isActive == false)
        try await server.close()
    }

    // MARK: - client certificates

    func mTLSProvider(_ pki: TestPKI, mode: ClientAuthMode, crl: Bool = false) async throws -> ServerTLSContextProvider
    {
        try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(
                certificates: [pki.serverPair],
                clientCA: pki.files.caCertificate,
                clientAuth: mode,
                crl: crl ? pki.files.crl : nil
            ),
            logger: testLogger
        )
    }

    @Test(arguments: [TLSVersion.tlsv12, .tlsv13])
    func requiredClientCertificateIsVerifiedAndIdentified(version: TLSVersion) async throws {
        let pki = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: .required))
        var configuration = try trustingClientConfiguration(pki, identity: pki.clientIdentity())
        configuration.maximumTLSVersion = version
        configuration.minimumTLSVersion = version
        let client = try await TestClient.connect(
            port: server.port,
            configuration: configuration,
            serverHostname: "localhost"
        )
        #expect(try await client.echo("mtls") == "mtls")
        let info = try await server.nextOutcome().get()
        let identity = try #require(info.clientCertificate)
        #expect(identity.uriSANs == [TestPKI.spiffeID])
        #expect(identity.emailSANs == [TestPKI.email])
        #expect(identity.dnsSANs == [])
        #expect(identity.subject == "CN=portcullis dev client,O=Portcullis development")
        await client.close()
        try await server.close()
    }

    @Test(arguments: [TLSVersion.tlsv12, .tlsv13])
    func requiredRefusesAMissingCertificate(version: TLSVersion) async throws {
        let pki = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: .required))
        var configuration = try trustingClientConfiguration(pki)
        configuration.maximumTLSVersion = version
        let client = try await TestClient.connect(
            port: server.port,
            configuration: configuration,
            serverHostname: "localhost"
        )
        #expect(await client.works() == false)
        #expect(try await server.nextOutcome().failed(with: "PEER_DID_NOT_RETURN_A_CERTIFICATE"))
        await client.close()
        try await server.close()
    }

    @Test(arguments: [ClientAuthMode.required, .optional])
    func certificateFromAnotherCAIsRefused(mode: ClientAuthMode) async throws {
        let pki = try TestPKI()
        let stranger = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: mode))
        let client = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: stranger.clientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await client.works() == false)
        #expect(try await server.nextOutcome().failed(with: "CERTIFICATE_VERIFY_FAILED"))
        await client.close()
        try await server.close()
    }

    @Test func optionalAcceptsNoCertificate() async throws {
        let pki = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: .optional))
        let anonymous = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki),
            serverHostname: "localhost"
        )
        #expect(await anonymous.works())
        #expect(try await server.nextOutcome().get().clientCertificate == nil)

        let identified = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: pki.clientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await identified.works())
        #expect(try await server.nextOutcome().get().clientCertificate?.uriSANs == [TestPKI.spiffeID])
        await anonymous.close()
        await identified.close()
        try await server.close()
    }

    @Test(arguments: [ClientAuthMode.required, .optional])
    func revokedCertificateIsRefusedByTheCRL(mode: ClientAuthMode) async throws {
        let pki = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: mode, crl: true))
        let revoked = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: pki.revokedClientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await revoked.works() == false)
        #expect(try await server.nextOutcome().failed(with: "CERTIFICATE_VERIFY_FAILED"))

        let good = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: pki.clientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await good.works())
        #expect(try await server.nextOutcome().get().clientCertificate?.uriSANs == [TestPKI.spiffeID])
        await revoked.close()
        await good.close()
        try await server.close()
    }

    @Test func withoutTheCRLTheRevokedCertificateIsAccepted() async throws {
        // The control for the test above: the certificate itself is fine, only the CRL refuses it.
        let pki = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: .required))
        let client = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: pki.revokedClientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await client.works())
        #expect(try await server.nextOutcome().get().clientCertificate?.uriSANs == [TestPKI.spiffeID + "-revoked"])
        await client.close()
        try await server.close()
    }

    @Test func serverCertificateIsNotAClientCertificate() async throws {
        // The server certificate chains to the client CA but carries only the serverAuth usage.
        let pki = try TestPKI()
        let server = try await TLSTestServer(provider: self.mTLSProvider(pki, mode: .required))
        let identity: (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKeySource) = (
            try NIOSSLCertificate.fromPEMFile(pki.files.serverCertificate).map { .certificate($0) },
            .privateKey(try NIOSSLPrivateKey(file: pki.files.serverPrivateKey, format: .pem))
        )
        let client = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: identity),
            serverHostname: "localhost"
        )
        #expect(await client.works() == false)
        #expect(try await server.nextOutcome().failed(with: "CERTIFICATE_VERIFY_FAILED"))
        await client.close()
        try await server.close()
    }

    @Test func keysAndCertificatesMadeByOpenSSLLoad() async throws {
        let folder = try TemporaryDirectory()
        // RSA (PKCS#8 key) and P-256 from `ecparam -genkey` (an EC PARAMETERS block before a SEC1 key).
        let rsa = try openssl([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", folder.file("rsa-key.pem"), "-out",
            folder.file("rsa.pem"), "-subj", "/CN=rsa.example.com", "-addext", "subjectAltName=DNS:rsa.example.com",
            "-days", "1",
        ])
        #expect(rsa.status == 0, "\(rsa.output)")
        let ecKey = try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-out", folder.file("ec-key.pem")])
        #expect(ecKey.status == 0, "\(ecKey.output)")
        let ec = try openssl([
            "req", "-x509", "-key", folder.file("ec-key.pem"), "-out", folder.file("ec.pem"), "-subj",
            "/CN=ec.example.com", "-addext", "subjectAltName=DNS:ec.example.com", "-days", "1",
        ])
        #expect(ec.status == 0, "\(ec.output)")
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(certificates: [
                CertificatePair(certificate: folder.file("rsa.pem"), privateKey: folder.file("rsa-key.pem")),
                CertificatePair(certificate: folder.file("ec.pem"), privateKey: folder.file("ec-key.pem")),
            ]),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        for name in ["rsa.example.com", "ec.example.com"] {
            let client = try await TestClient.connect(
                port: server.port,
                configuration: inspectingClientConfiguration(),
                serverHostname: name
            )
            #expect(try await client.echo(name) == name)
            #expect(try await client.serverCertificate().dnsNames == [name])
            await client.close()
        }
        try await server.close()
    }

    // MARK: - loading errors

    @Test func crlSignedByAnotherCAIsRefusedAtLoad() async throws {
        let pki = try TestPKI()
        let stranger = try TestPKI()
        let configuration = ListenerTLSConfig(
            certificates: [pki.serverPair],
            clientCA: pki.files.caCertificate,
            clientAuth: .required,
            crl: stranger.files.crl
        )
        let error = await #expect(throws: TLSSetupError.self) {
            _ = try await ServerTLSContextProvider(configuration: configuration, logger: testLogger)
        }
        #expect(error?.code == .untrustedCRL)
        #expect(error?.file == stranger.files.crl)
    }

    @Test func keyOfAnotherCertificateIsRefused() async throws {
        let pki = try TestPKI()
        let configuration = ListenerTLSConfig(
            certificates: [
                CertificatePair(certificate: pki.files.serverCertificate, privateKey: pki.files.clientPrivateKey)
            ]
        )
        let error = await #expect(throws: TLSSetupError.self) {
            _ = try await ServerTLSContextProvider(configuration: configuration, logger: testLogger)
        }
        #expect(error?.code == .keyMismatch)
        #expect(error?.file == pki.files.clientPrivateKey)
        #expect(error?.description.contains(pki.files.serverCertificate) == true)
    }

    @Test func missingFileIsNamed() async throws {
        let pki = try TestPKI()
        let missing = pki.directory.file("nope.pem")
        let configuration = ListenerTLSConfig(
            certificates: [CertificatePair(certificate: missing, privateKey: pki.files.serverPrivateKey)]
        )
        let error = await #expect(throws: TLSSetupError.self) {
            _ = try await ServerTLSContextProvider(configuration: configuration, logger: testLogger)
        }
        #expect(error?.code == .unreadableFile)
        #expect(error?.description == "\(missing): unreadable file: file not found")
    }

    @Test func privateKeyContentsNeverAppearInErrors() async throws {
        let pki = try TestPKI()
        let key = try String(contentsOfFile: pki.files.serverPrivateKey, encoding: .utf8)
        // A key file whose PEM body is damaged.
        let damaged = try pki.directory.write("damaged-key.pem", key.replacingOccurrences(of: "M", with: "*"))
        let configuration = ListenerTLSConfig(
            certificates: [CertificatePair(certificate: pki.files.serverCertificate, privateKey: damaged)]
        )
        let error = await #expect(throws: TLSSetupError.self) {
            _ = try await ServerTLSContextProvider(configuration: configuration, logger: testLogger)
        }
        #expect(error?.file == damaged)
        let body = key.split(separator: "\n").dropFirst().first.map(String.init) ?? "unlikely"
        #expect(error?.description.contains(body) == false)
    }

    @Test func privateKeysAreWrittenWithMode0600() throws {
        let pki = try TestPKI()
        for path in [
            pki.files.caPrivateKey, pki.files.serverPrivateKey, pki.files.clientPrivateKey,
            pki.files.revokedClientPrivateKey,
        ] {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(path)")
        }
        let certificate = try FileManager.default.attributesOfItem(atPath: pki.files.serverCertificate)
        #expect((certificate[.posixPermissions] as? NSNumber)?.intValue == 0o644)
    }
}

@Suite("handshake report state machine")
struct TLSHandshakeReportStateMachineTests {
    @Test func reportsOnceAfterSelection() {
        var machine = TLSHandshakeReportStateMachine()
        let early = machine.handshakeCompleted()
        #expect(early == .forward)
        let first = machine.certificateSelected(serverName: "a.example.com", certificateIndex: 1)
        let second = machine.certificateSelected(serverName: "b.example.com", certificateIndex: 2)
        #expect(first && !second)
        let completed = machine.handshakeCompleted()
        #expect(completed == .report(serverName: "a.example.com", certificateIndex: 1))
        let again = machine.handshakeCompleted()
        #expect(again == .forward)
        let lateFailure = machine.connectionFailed()
        #expect(lateFailure == .none)
    }

    @Test func failsOnceBeforeTheHandshake() {
        var machine = TLSHandshakeReportStateMachine()
        let failure = machine.connectionFailed()
        let repeated = machine.connectionFailed()
        #expect(failure == .failPromise)
        #expect(repeated == .none)
        let selected = machine.certificateSelected(serverName: nil, certificateIndex: 0)
        #expect(selected == false)
        let completed = machine.handshakeCompleted()
        #expect(completed == .forward)

        var during = TLSHandshakeReportStateMachine()
        let taken = during.certificateSelected(serverName: nil, certificateIndex: 0)
        let failed = during.connectionFailed()
        let after = during.handshakeCompleted()
        #expect(taken)
        #expect(failed == .failPromise)
        #expect(after == .forward)
    }
}
