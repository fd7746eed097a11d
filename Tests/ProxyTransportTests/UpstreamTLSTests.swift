import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import ProxyConfig
import ProxyModel
import Testing

@testable import ProxyTransport

/// The proxy as a TLS client of an upstream: verification on by default, SNI, client certificates.
@Suite("upstream TLS")
struct UpstreamTLSTests {
    /// An upstream (our own TLS server) with `pki`'s server certificate for localhost, 127.0.0.1 and api.internal.
    func upstream(_ pki: TestPKI, clientCA: Bool = false) async throws -> TLSTestServer {
        let provider = try await ServerTLSContextProvider(
            configuration: ListenerTLSConfig(
                certificates: [pki.serverPair],
                clientCA: clientCA ? pki.files.caCertificate : nil,
                clientAuth: .required
            ),
            logger: testLogger
        )
        return try await TLSTestServer(provider: provider)
    }

    func connect(
        _ server: TLSTestServer,
        _ provider: UpstreamTLSContextProvider,
        host: String
    ) async throws -> TestClient {
        try await TestClient.connect(port: server.port) {
            try provider.makeClientHandler(endpoint: HostPort(host: host, port: server.port))
        }
    }

    @Test func rightCAIsAcceptedAndSNIIsSent() async throws {
        let pki = try TestPKI()
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: pki.files.caCertificate),
            logger: testLogger
        )
        let client = try await self.connect(server, provider, host: "localhost")
        #expect(try await client.handshake() == "http/1.1")
        #expect(try await client.echo("upstream") == "upstream")
        let info = try await server.nextOutcome().get()
        #expect(info.serverName == "localhost")
        #expect(info.tlsVersion == .tls13)
        await client.close()
        try await server.close()
    }

    @Test func wrongCAIsRefused() async throws {
        let pki = try TestPKI()
        let other = try TestPKI()
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: other.files.caCertificate),
            logger: testLogger
        )
        let client = try await self.connect(server, provider, host: "localhost")
        let error = await #expect(throws: NIOSSLError.self) { try await client.handshake() }
        #expect(String(describing: error).contains("CERTIFICATE_VERIFY_FAILED"))
        #expect(try await server.nextOutcome().failed)
        await client.close()
        try await server.close()
    }

    @Test func systemTrustStoreRefusesTheDevelopmentCA() async throws {
        let pki = try TestPKI()
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(configuration: nil, logger: testLogger)
        let client = try await self.connect(server, provider, host: "localhost")
        await #expect(throws: (any Error).self) { try await client.handshake() }
        await client.close()
        try await server.close()
    }

    @Test func configuredServerNameIsSentAndVerified() async throws {
        let pki = try TestPKI()
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: pki.files.caCertificate, serverName: "api.internal"),
            logger: testLogger
        )
        #expect(provider.serverName(forEndpointHost: "127.0.0.1") == "api.internal")
        let client = try await self.connect(server, provider, host: "127.0.0.1")
        #expect(try await client.echo("named") == "named")
        #expect(try await server.nextOutcome().get().serverName == "api.internal")
        await client.close()
        try await server.close()
    }

    @Test func nameNotInTheCertificateIsRefused() async throws {
        // No IP SAN: NIOSSL accepts a certificate whose IP SAN matches the connected address whatever
        // the expected name, so this upstream is only reachable by name.
        let pki = try TestPKI(serverNames: ["localhost", "api.internal"])
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: pki.files.caCertificate, serverName: "other.internal"),
            logger: testLogger
        )
        let client = try await self.connect(server, provider, host: "127.0.0.1")
        await #expect(throws: (any Error).self) { try await client.handshake() }
        await client.close()
        try await server.close()
    }

    @Test func ipEndpointSendsNoSNIAndIsVerifiedByIP() async throws {
        let pki = try TestPKI()
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: pki.files.caCertificate),
            logger: testLogger
        )
        #expect(provider.serverName(forEndpointHost: "127.0.0.1") == nil)
        let client = try await self.connect(server, provider, host: "127.0.0.1")
        #expect(try await client.echo("by ip") == "by ip")
        #expect(try await server.nextOutcome().get().serverName == nil)
        await client.close()
        try await server.close()

        // Without 127.0.0.1 among the certificate's names, the same connection is refused.
        let dnsOnly = try TestPKI(serverNames: ["localhost"])
        let strict = try await self.upstream(dnsOnly)
        let strictProvider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: dnsOnly.files.caCertificate),
            logger: testLogger
        )
        let refused = try await self.connect(strict, strictProvider, host: "127.0.0.1")
        await #expect(throws: (any Error).self) { try await refused.handshake() }
        await refused.close()
        try await strict.close()
    }

    @Test func clientCertificateIsPresented() async throws {
        let pki = try TestPKI()
        let server = try await self.upstream(pki, clientCA: true)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(
                caFile: pki.files.caCertificate,
                clientCertificate: pki.files.clientCertificate,
                clientKey: pki.files.clientPrivateKey
            ),
            logger: testLogger
        )
        let client = try await self.connect(server, provider, host: "localhost")
        #expect(try await client.echo("with cert") == "with cert")
        #expect(try await server.nextOutcome().get().clientCertificate?.uriSANs == [TestPKI.spiffeID])
        await client.close()
        try await server.close()

        // The same upstream refuses the proxy without its certificate.
        let server2 = try await self.upstream(pki, clientCA: true)
        let anonymous = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: pki.files.caCertificate),
            logger: testLogger
        )
        let refused = try await self.connect(server2, anonymous, host: "localhost")
        #expect(await refused.works() == false)
        await refused.close()
        try await server2.close()
    }

    @Test func insecureSkipVerifyAcceptsAnyCertificate() async throws {
        let pki = try TestPKI()
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(insecureSkipVerify: true),
            logger: testLogger
        )
        let client = try await self.connect(server, provider, host: "localhost")
        #expect(try await client.echo("insecure") == "insecure")
        await client.close()
        try await server.close()
    }

    @Test func minimumVersion13() async throws {
        let pki = try TestPKI()
        // An upstream that speaks TLS 1.2 at most.
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(pki.files.serverCertificate).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: pki.files.serverPrivateKey, format: .pem))
        )
        tls.maximumTLSVersion = .tlsv12
        let context = try NIOSSLContext(configuration: tls)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.addHandler(EchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = server.localAddress!.port!
        for (minimum, works) in [(TLSMinimumVersion.tls12, true), (.tls13, false)] {
            let provider = try await UpstreamTLSContextProvider(
                configuration: UpstreamTLSConfig(caFile: pki.files.caCertificate, minVersion: minimum),
                logger: testLogger
            )
            let client = try await TestClient.connect(port: port) {
                try provider.makeClientHandler(serverHostname: "localhost")
            }
            #expect(await client.works() == works, "min_version \(minimum.rawValue)")
            await client.close()
        }
        try await server.close()
    }

    @Test func caBundleReload() async throws {
        let pki = try TestPKI()
        let other = try TestPKI()
        let bundle = try pki.directory.write(
            "bundle.pem",
            String(contentsOfFile: other.files.caCertificate, encoding: .utf8)
        )
        let server = try await self.upstream(pki)
        let provider = try await UpstreamTLSContextProvider(
            configuration: UpstreamTLSConfig(caFile: bundle),
            logger: testLogger
        )
        let before = try await self.connect(server, provider, host: "localhost")
        #expect(await before.works() == false)
        #expect(provider.filesChanged() == false)

        // The bundle now holds both CAs.
        try pki.directory.write(
            "bundle.pem",
            String(contentsOfFile: other.files.caCertificate, encoding: .utf8)
                + String(contentsOfFile: pki.files.caCertificate, encoding: .utf8)
        )
        #expect(provider.filesChanged())
        #expect(try await provider.reload().generation == 2)
        #expect(provider.filesChanged() == false)
        let after = try await self.connect(server, provider, host: "localhost")
        #expect(await after.works())

        // A broken bundle keeps the working context, and is reported once.
        try pki.directory.write("bundle.pem", "garbage")
        await #expect(throws: TLSSetupError.self) { try await provider.reload() }
        #expect(provider.filesChanged() == false)
        let still = try await self.connect(server, provider, host: "localhost")
        #expect(await still.works())
        await before.close()
        await after.close()
        await still.close()
        try await server.close()
    }

    @Test func missingClientKeyFileIsNamed() async throws {
        let pki = try TestPKI()
        let error = await #expect(throws: TLSSetupError.self) {
            _ = try await UpstreamTLSContextProvider(
                configuration: UpstreamTLSConfig(
                    clientCertificate: pki.files.clientCertificate,
                    clientKey: pki.directory.file("missing-key.pem")
                ),
                logger: testLogger
            )
        }
        #expect(error?.file == pki.directory.file("missing-key.pem"))
    }
}
