import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ProxyConfig
import ProxyModel
import Testing
import X509

@testable import ProxyTransport

/// Certificate reload: new connections get the new set, open ones keep theirs, bad files keep the old set.
@Suite("TLS reload")
struct ReloadTests {
    /// Two server certificates (names `first.example.com` and `second.example.com`) and a listener whose
    /// `cert.pem`/`key.pem` start as the first.
    struct Fixture {
        let folder: TemporaryDirectory
        let first: DevIssuedCertificate
        let second: DevIssuedCertificate
        let configuration: ListenerTLSConfig

        init() throws {
            self.folder = try TemporaryDirectory()
            let authority = try DevCertificateAuthority(
                commonName: "reload CA",
                notBefore: Date().addingTimeInterval(-60),
                notAfter: Date().addingTimeInterval(3_600)
            )
            self.first = try authority.issueServerCertificate(
                names: ["first.example.com"],
                notBefore: Date().addingTimeInterval(-60),
                notAfter: Date().addingTimeInterval(3_600)
            )
            self.second = try authority.issueServerCertificate(
                names: ["second.example.com"],
                notBefore: Date().addingTimeInterval(-60),
                notAfter: Date().addingTimeInterval(3_600)
            )
            self.configuration = ListenerTLSConfig(
                certificates: [
                    CertificatePair(certificate: self.folder.file("cert.pem"), privateKey: self.folder.file("key.pem"))
                ]
            )
            try self.install(self.first)
        }

        func install(_ issued: DevIssuedCertificate) throws {
            try self.folder.write("cert.pem", issued.certificatePEM())
            try self.folder.write("key.pem", issued.keyPEM)
        }
    }

    func connect(_ server: TLSTestServer) async throws -> TestClient {
        try await TestClient.connect(
            port: server.port,
            configuration: inspectingClientConfiguration(),
            serverHostname: "first.example.com"
        )
    }

    @Test func newConnectionsGetTheNewCertificateOpenOnesKeepWorking() async throws {
        let fixture = try Fixture()
        let provider = try await ServerTLSContextProvider(configuration: fixture.configuration, logger: testLogger)
        let server = try await TLSTestServer(provider: provider)

        let before = try await self.connect(server)
        #expect(try await before.echo("one") == "one")
        #expect(try await before.serverCertificate().dnsNames == ["first.example.com"])
        #expect(try await server.nextOutcome().get().generation == 1)
        #expect(provider.filesChanged() == false)

        try fixture.install(fixture.second)
        #expect(provider.filesChanged())
        let snapshot = try await provider.reload()
        #expect(snapshot.generation == 2)
        #expect(snapshot.certificates[0].leaf.dnsNames == ["second.example.com"])
        #expect(provider.filesChanged() == false)

        let after = try await self.connect(server)
        #expect(try await after.echo("two") == "two")
        #expect(try await after.serverCertificate().dnsNames == ["second.example.com"])
        #expect(try await server.nextOutcome().get().generation == 2)

        // The connection opened before the reload still works, on its original certificate.
        #expect(try await before.echo("still here") == "still here")
        #expect(try await before.serverCertificate().dnsNames == ["first.example.com"])

        await before.close()
        await after.close()
        try await server.close()
    }

    @Test func brokenFileKeepsTheOldSetAndThrows() async throws {
        let fixture = try Fixture()
        let provider = try await ServerTLSContextProvider(configuration: fixture.configuration, logger: testLogger)
        let server = try await TLSTestServer(provider: provider)

        try fixture.folder.write(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
        )
        #expect(provider.filesChanged())
        let error = await #expect(throws: TLSSetupError.self) { try await provider.reload() }
        #expect(error?.code == .invalidCertificate)
        #expect(error?.file == fixture.folder.file("cert.pem"))
        // Reported once: the same broken files are not retried at every poll.
        #expect(provider.filesChanged() == false)
        #expect(try await provider.reloadIfFilesChanged() == false)
        #expect(provider.snapshot.generation == 1)

        let client = try await self.connect(server)
        #expect(try await client.echo("old set") == "old set")
        #expect(try await client.serverCertificate().dnsNames == ["first.example.com"])
        #expect(try await server.nextOutcome().get().generation == 1)

        // A certificate with the wrong key (a half-finished update) is refused the same way.
        try fixture.folder.write("cert.pem", fixture.second.certificatePEM())
        let mismatch = await #expect(throws: TLSSetupError.self) { try await provider.reloadIfFilesChanged() }
        #expect(mismatch?.code == .keyMismatch)
        #expect(mismatch?.file == fixture.folder.file("key.pem"))

        // Once both files are consistent, the poll picks them up.
        try fixture.folder.write("key.pem", fixture.second.keyPEM)
        #expect(try await provider.reloadIfFilesChanged())
        #expect(provider.snapshot.certificates[0].leaf.dnsNames == ["second.example.com"])
        #expect(provider.snapshot.generation > 1)

        await client.close()
        try await server.close()
    }

    @Test func reloadWithANewConfiguration() async throws {
        let fixture = try Fixture()
        let provider = try await ServerTLSContextProvider(configuration: fixture.configuration, logger: testLogger)
        try fixture.folder.write("other.pem", fixture.second.certificatePEM())
        try fixture.folder.write("other-key.pem", fixture.second.keyPEM)
        let extended = ListenerTLSConfig(
            certificates: fixture.configuration.certificates + [
                CertificatePair(
                    certificate: fixture.folder.file("other.pem"),
                    privateKey: fixture.folder.file("other-key.pem")
                )
            ],
            minVersion: .tls13
        )
        try await provider.reload(configuration: extended)
        #expect(provider.configuration == extended)
        #expect(provider.snapshot.certificates.count == 2)
        #expect(provider.snapshot.certificateIndex(forServerName: "second.example.com") == 1)

        // A new configuration naming a missing file is refused and changes nothing.
        let broken = ListenerTLSConfig(
            certificates: [
                CertificatePair(
                    certificate: fixture.folder.file("missing.pem"),
                    privateKey: fixture.folder.file("key.pem")
                )
            ]
        )
        await #expect(throws: TLSSetupError.self) { try await provider.reload(configuration: broken) }
        #expect(provider.configuration == extended)
        #expect(provider.snapshot.certificates.count == 2)
    }

    @Test func reloadRunsOnAThreadPool() async throws {
        let fixture = try Fixture()
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let provider = try await ServerTLSContextProvider(
            configuration: fixture.configuration,
            threadPool: pool,
            logger: testLogger
        )
        try fixture.install(fixture.second)
        #expect(try await provider.reloadIfFilesChanged())
        #expect(provider.snapshot.certificates[0].leaf.dnsNames == ["second.example.com"])
        try await pool.shutdownGracefully()
        // A stopped pool refuses work: the reload fails and the snapshot stays.
        try fixture.install(fixture.first)
        await #expect(throws: (any Error).self) { try await provider.reload() }
        #expect(provider.snapshot.certificates[0].leaf.dnsNames == ["second.example.com"])
    }

    @Test func crlChangeIsPickedUp() async throws {
        let pki = try TestPKI()
        let folder = pki.directory
        // Start with a CRL that revokes nothing, then swap in the one revoking the second client.
        let authority = try DevCertificateAuthority.load(
            certificate: pki.files.caCertificate,
            key: pki.files.caPrivateKey
        )
        let empty = try authority.makeCRL(revoking: [], thisUpdate: Date().addingTimeInterval(-60), nextUpdate: nil)
        try folder.write("crl.pem", PEMDocumentWriter.pem(type: "X509 CRL", der: empty))
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(
                certificates: [pki.serverPair],
                clientCA: pki.files.caCertificate,
                clientAuth: .required,
                crl: folder.file("crl.pem")
            ),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        let before = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: pki.revokedClientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await before.works())
        _ = try await server.nextOutcome()

        try folder.copy(pki.files.crl, to: "crl.pem")
        #expect(try await provider.reloadIfFilesChanged())
        let after = try await TestClient.connect(
            port: server.port,
            configuration: try trustingClientConfiguration(pki, identity: pki.revokedClientIdentity()),
            serverHostname: "localhost"
        )
        #expect(await after.works() == false)
        #expect(try await server.nextOutcome().failed(with: "CERTIFICATE_VERIFY_FAILED"))
        await before.close()
        await after.close()
        try await server.close()
    }
}

extension ReloadTests {
    /// `openssl s_client` over TLS 1.2 that stays a second (to receive the session) and saves or reuses it.
    func sClient(port: Int, pki: TestPKI, arguments: String) throws -> String {
        _ = try openssl(["version"])  // fails the test if openssl is missing
        let command =
            "sleep 1 | openssl s_client -tls1_2 -connect 127.0.0.1:\(port) -servername localhost "
            + "-CAfile \(pki.files.caCertificate) \(arguments)"
        return try run("/bin/sh", ["-c", command]).output
    }

    /// TLS session resumption skips certificate verification; sessions belong to one snapshot's contexts,
    /// so after a reload (here: a CRL revoking the certificate) a saved session is not resumed.
    @Test func resumedSessionsKeepTheIdentityButDoNotSurviveAReload() async throws {
        let pki = try TestPKI()
        let authority = try DevCertificateAuthority.load(
            certificate: pki.files.caCertificate,
            key: pki.files.caPrivateKey
        )
        let empty = try authority.makeCRL(revoking: [], thisUpdate: Date().addingTimeInterval(-60), nextUpdate: nil)
        try pki.directory.write("crl.pem", PEMDocumentWriter.pem(type: "X509 CRL", der: empty))
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(
                certificates: [pki.serverPair],
                clientCA: pki.files.caCertificate,
                clientAuth: .optional,
                crl: pki.directory.file("crl.pem")
            ),
            logger: testLogger
        )
        let server = try await TLSTestServer(provider: provider)
        let session = pki.directory.file("session.pem")
        _ = try self.sClient(
            port: server.port,
            pki: pki,
            arguments: "-cert \(pki.files.revokedClientCertificate) -key \(pki.files.revokedClientPrivateKey) "
                + "-sess_out \(session)"
        )
        let identity = try await server.nextOutcome().get().clientCertificate
        #expect(identity?.uriSANs == [TestPKI.spiffeID + "-revoked"])

        let resumed = try self.sClient(port: server.port, pki: pki, arguments: "-sess_in \(session)")
        #expect(resumed.contains("Reused, TLSv1.2"))
        #expect(try await server.nextOutcome().get().clientCertificate == identity)

        try pki.directory.copy(pki.files.crl, to: "crl.pem")
        #expect(try await provider.reloadIfFilesChanged())
        let afterReload = try self.sClient(port: server.port, pki: pki, arguments: "-sess_in \(session)")
        #expect(afterReload.contains("Reused") == false)
        let info = try await server.nextOutcome().get()
        #expect(info.generation == 2)
        #expect(info.clientCertificate == nil)
        try await server.close()
    }
}

enum PEMDocumentWriter {
    static func pem(type: String, der: [UInt8]) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(type)-----\n\(base64)\n-----END \(type)-----\n"
    }
}
