import Crypto
import Foundation
import NIOSSL
import ProxyModel
import SwiftASN1
import Testing
import X509

@testable import ProxyTransport

/// Runs `openssl` with `arguments`; the test fails (it does not skip) when openssl is missing.
func openssl(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let candidates = ["/usr/bin/openssl", "/usr/local/bin/openssl", "/opt/homebrew/bin/openssl"]
    guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        Issue.record("openssl is not installed; these tests need it")
        throw OpenSSLMissing()
    }
    return try run(executable, arguments)
}

/// Runs a program with stdin closed; its stdout and stderr together.
func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardInput = FileHandle.nullDevice
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

struct OpenSSLMissing: Error {}

@Suite("development certificates and CRLs")
struct CertificateTests {
    @Test func generatedCertificatesVerifyWithOpenSSL() throws {
        let pki = try TestPKI()
        let files = pki.files
        for certificate in [files.serverCertificate, files.clientCertificate, files.revokedClientCertificate] {
            let result = try openssl(["verify", "-CAfile", files.caCertificate, certificate])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains(": OK"))
        }
        // The purposes are right: the server certificate for TLS servers, the client one for clients.
        let server = try openssl([
            "verify", "-purpose", "sslserver", "-CAfile", files.caCertificate, files.serverCertificate,
        ])
        #expect(server.status == 0, "\(server.output)")
        let client = try openssl([
            "verify", "-purpose", "sslclient", "-CAfile", files.caCertificate, files.clientCertificate,
        ])
        #expect(client.status == 0, "\(client.output)")
        let wrongPurpose = try openssl([
            "verify", "-purpose", "sslclient", "-CAfile", files.caCertificate, files.serverCertificate,
        ])
        #expect(wrongPurpose.status != 0)
        // A certificate is not verified by a foreign CA.
        let stranger = try TestPKI()
        let foreign = try openssl(["verify", "-CAfile", stranger.files.caCertificate, files.serverCertificate])
        #expect(foreign.status != 0)
    }

    @Test func opensslReadsTheCRLAndRevokesTheSecondClient() throws {
        let pki = try TestPKI()
        let files = pki.files
        let text = try openssl(["crl", "-in", files.crl, "-noout", "-text"])
        #expect(text.status == 0, "\(text.output)")
        #expect(text.output.contains("Revoked Certificates:"))
        let signature = try openssl(["crl", "-in", files.crl, "-noout", "-CAfile", files.caCertificate])
        #expect(signature.status == 0, "\(signature.output)")
        #expect(signature.output.contains("verify OK"))

        let revoked = try openssl(
            [
                "verify", "-crl_check", "-CAfile", files.caCertificate, "-CRLfile", files.crl,
                files.revokedClientCertificate,
            ]
        )
        #expect(revoked.status != 0)
        #expect(revoked.output.contains("certificate revoked"))
        let good = try openssl(
            ["verify", "-crl_check", "-CAfile", files.caCertificate, "-CRLfile", files.crl, files.clientCertificate]
        )
        #expect(good.status == 0, "\(good.output)")
    }

    @Test func serverCertificateNames() throws {
        let pki = try TestPKI(serverNames: ["proxy.example.com", "127.0.0.1", "::1"])
        let certificate = try Certificate(
            pemEncoded: String(contentsOfFile: pki.files.serverCertificate, encoding: .utf8)
        )
        let names = try #require(try certificate.extensions.subjectAlternativeNames)
        #expect(Array(names).contains(.dnsName("proxy.example.com")))
        #expect(Array(names).contains(.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))))
        #expect(
            Array(names).contains(.ipAddress(ASN1OctetString(contentBytes: [UInt8](repeating: 0, count: 15) + [1])))
        )
        #expect(try certificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        #expect(try certificate.extensions.basicConstraints == .notCertificateAuthority)
        let text = try openssl(["x509", "-in", pki.files.serverCertificate, "-noout", "-ext", "subjectAltName"])
        #expect(text.output.contains("IP Address:127.0.0.1"))
        #expect(text.output.contains("DNS:proxy.example.com"))
    }

    @Test func ourParserReadsTheGeneratedCRL() throws {
        let pki = try TestPKI()
        let lists = try CertificateRevocationList.parse(
            fileContents: Array(try Data(contentsOf: URL(fileURLWithPath: pki.files.crl)))
        )
        #expect(lists.count == 1)
        let list = try #require(lists.first)
        let ca = try Certificate(pemEncoded: String(contentsOfFile: pki.files.caCertificate, encoding: .utf8))
        let revoked = try Certificate(
            pemEncoded: String(contentsOfFile: pki.files.revokedClientCertificate, encoding: .utf8)
        )
        let good = try Certificate(pemEncoded: String(contentsOfFile: pki.files.clientCertificate, encoding: .utf8))
        #expect(list.issuer == ca.subject)
        #expect(list.revokedSerialNumbers == [revoked.serialNumber])
        #expect(list.revokes(revoked))
        #expect(!list.revokes(good))
        #expect(list.nextUpdate != nil)
        #expect(list.crlNumber == [1])
        #expect(list.isSigned(by: ca))
        let strangerPKI = try TestPKI()
        let stranger = try Certificate(
            pemEncoded: String(contentsOfFile: strangerPKI.files.caCertificate, encoding: .utf8)
        )
        #expect(!list.isSigned(by: stranger))
    }

    @Test func opensslMadeCRLIsReadToo() throws {
        // A CRL made by `openssl ca` from our CA (interop in the other direction), revoking the client.
        let pki = try TestPKI()
        let folder = pki.directory
        try folder.write("index.txt", "")
        try folder.write("crlnumber", "1000\n")
        let configuration = try folder.write(
            "ca.cnf",
            """
            [ ca ]
            default_ca = dev
            [ dev ]
            database = \(folder.file("index.txt"))
            crlnumber = \(folder.file("crlnumber"))
            certificate = \(pki.files.caCertificate)
            private_key = \(pki.files.caPrivateKey)
            default_md = sha256
            default_crl_days = 1

            """
        )
        let revoke = try openssl(["ca", "-config", configuration, "-revoke", pki.files.clientCertificate])
        #expect(revoke.status == 0, "\(revoke.output)")
        let generate = try openssl(["ca", "-config", configuration, "-gencrl", "-out", folder.file("openssl-crl.pem")])
        #expect(generate.status == 0, "\(generate.output)")
        let lists = try CertificateRevocationList.parse(
            fileContents: Array(try Data(contentsOf: URL(fileURLWithPath: folder.file("openssl-crl.pem"))))
        )
        let client = try Certificate(pemEncoded: String(contentsOfFile: pki.files.clientCertificate, encoding: .utf8))
        let ca = try Certificate(pemEncoded: String(contentsOfFile: pki.files.caCertificate, encoding: .utf8))
        #expect(lists.first?.revokes(client) == true)
        #expect(lists.first?.isSigned(by: ca) == true)
        #expect(lists.first?.crlNumber == [0x10, 0x00])
    }

    @Test func crlWithAnUnknownCriticalExtensionIsRefused() throws {
        // Hand-made TBSCertList with a critical deltaCRLIndicator (2.5.29.27): never used for revocation.
        let pki = try TestPKI()
        let ca = try Certificate(pemEncoded: String(contentsOfFile: pki.files.caCertificate, encoding: .utf8))
        let key = try P256.Signing.PrivateKey(
            pemRepresentation: String(contentsOfFile: pki.files.caPrivateKey, encoding: .utf8)
        )
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)
            try coder.appendConstructedNode(identifier: .sequence) {
                try $0.serialize(CertificateRevocationList.ecdsaWithSHA256OID)
            }
            try coder.serialize(ca.subject)
            try CivilTime.serialize(Date(), into: &coder)
            try coder.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                tagged in
                try tagged.appendConstructedNode(identifier: .sequence) { extensions in
                    try extensions.serialize(
                        Certificate.Extension(oid: [2, 5, 29, 27], critical: true, value: [0x02, 0x01, 0x01])
                    )
                }
            }
        }
        let signature = try key.signature(for: tbs.serializedBytes).derRepresentation
        var list = DER.Serializer()
        try list.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbs.serializedBytes)
            try coder.appendConstructedNode(identifier: .sequence) {
                try $0.serialize(CertificateRevocationList.ecdsaWithSHA256OID)
            }
            try coder.serialize(ASN1BitString(bytes: Array(signature)[...]))
        }
        #expect(throws: (any Error).self) { try CertificateRevocationList(derEncoded: list.serializedBytes) }
    }

    @Test func tamperedCRLFailsItsSignature() throws {
        let pki = try TestPKI()
        let ca = try Certificate(pemEncoded: String(contentsOfFile: pki.files.caCertificate, encoding: .utf8))
        let authority = try DevCertificateAuthority.load(
            certificate: pki.files.caCertificate,
            key: pki.files.caPrivateKey
        )
        let serial = Certificate.SerialNumber(bytes: [0x01, 0x02, 0x03])
        var der = try authority.makeCRL(revoking: [(serial, Date())], thisUpdate: Date(), nextUpdate: nil)
        #expect(try CertificateRevocationList(derEncoded: der).isSigned(by: ca))
        // Flip the last byte of the revoked serial (inside tbsCertList).
        let index = try #require(der.firstRange(of: [0x02, 0x03, 0x01, 0x02, 0x03])).upperBound - 1
        der[index] ^= 0xFF
        let tampered = try CertificateRevocationList(derEncoded: der)
        #expect(!tampered.isSigned(by: ca))
        #expect(throws: TLSSetupError.self) {
            try ClientCertificateVerifier(
                certificateAuthorities: [ca],
                revocationLists: [tampered],
                crlFile: "/x/crl.pem"
            )
        }
        // A CRL signed with another key but naming our CA as issuer is refused the same way.
        let forged = try authority.makeCRL(
            revoking: [],
            thisUpdate: Date(),
            nextUpdate: nil,
            signedBy: P256.Signing.PrivateKey()
        )
        #expect(!(try CertificateRevocationList(derEncoded: forged).isSigned(by: ca)))
    }

    @Test func verifierChecksExpiryAtAGivenTime() async throws {
        let pki = try TestPKI()
        let ca = try Certificate(pemEncoded: String(contentsOfFile: pki.files.caCertificate, encoding: .utf8))
        let client = try Certificate(pemEncoded: String(contentsOfFile: pki.files.clientCertificate, encoding: .utf8))
        var serializer = DER.Serializer()
        try serializer.serialize(client)
        let verifier = try ClientCertificateVerifier(certificateAuthorities: [ca])
        #expect(await verifier.verify(presentedChain: [serializer.serializedBytes]).isValid)
        #expect(
            await verifier.verify(presentedChain: [serializer.serializedBytes], time: Date().addingTimeInterval(7_200))
                .isValid == false
        )
        #expect(await verifier.verify(presentedChain: []).isValid == false)
        #expect(await verifier.verify(presentedChain: [[0x30, 0x00]]).isValid == false)
    }

    @Test func verifierReasons() async throws {
        let pki = try TestPKI()
        let stranger = try TestPKI()
        func der(_ path: String) throws -> [UInt8] {
            var serializer = DER.Serializer()
            try serializer.serialize(Certificate(pemEncoded: String(contentsOfFile: path, encoding: .utf8)))
            return serializer.serializedBytes
        }
        let ca = try Certificate(pemEncoded: String(contentsOfFile: pki.files.caCertificate, encoding: .utf8))
        let lists = try CertificateRevocationList.parse(
            fileContents: Array(try Data(contentsOf: URL(fileURLWithPath: pki.files.crl)))
        )
        let verifier = try ClientCertificateVerifier(certificateAuthorities: [ca], revocationLists: lists)

        guard case .valid(let chain) = await verifier.verify(presentedChain: [try der(pki.files.clientCertificate)])
        else {
            Issue.record("the client certificate should verify")
            return
        }
        #expect(chain.count == 2)
        #expect(chain.last == ca)
        guard
            case .invalid(let revoked) = await verifier.verify(presentedChain: [
                try der(pki.files.revokedClientCertificate)
            ])
        else {
            Issue.record("the revoked certificate verified")
            return
        }
        #expect(revoked.contains("is revoked"))
        guard case .invalid(let usage) = await verifier.verify(presentedChain: [try der(pki.files.serverCertificate)])
        else {
            Issue.record("the server certificate verified as a client certificate")
            return
        }
        #expect(usage.contains("client authentication"))
        guard
            case .invalid(let foreign) = await verifier.verify(presentedChain: [
                try der(stranger.files.clientCertificate)
            ])
        else {
            Issue.record("a foreign certificate verified")
            return
        }
        #expect(foreign.contains("no path to a client CA"))
        // A foreign CA certificate sent along as an "intermediate" does not help.
        let withForeignCA = [try der(stranger.files.clientCertificate), try der(stranger.files.caCertificate)]
        #expect(await verifier.verify(presentedChain: withForeignCA).isValid == false)
    }

    @Test func identityFromACertificate() throws {
        let authority = try DevCertificateAuthority(
            commonName: "identity CA",
            notBefore: Date(),
            notAfter: Date().addingTimeInterval(60)
        )
        let issued = try authority.issueClientCertificate(
            commonName: "job, \"nightly\"",
            uris: ["spiffe://example.com/batch/nightly", "spiffe://bad\u{0A}injected"],
            emails: ["ops@example.com"],
            dnsNames: ["batch.internal"],
            notBefore: Date(),
            notAfter: Date().addingTimeInterval(60)
        )
        let identity = try ClientCertificateIdentity(certificate: issued.certificate)
        #expect(identity.subject == "CN=job\\, \\\"nightly\\\",O=Portcullis development")
        #expect(identity.uriSANs == ["spiffe://example.com/batch/nightly"])
        #expect(identity.dnsSANs == ["batch.internal"])
        #expect(identity.emailSANs == ["ops@example.com"])
        let native = try NIOSSLCertificate(bytes: Array(issued.certificatePEM().utf8), format: .pem)
        #expect(try ClientCertificateIdentity(certificate: native) == identity)
        #expect(ClientCertificateIdentity.escapingControlCharacters("CN=a\u{0}b\u{1F}") == "CN=a\\00b\\1F")
    }

    @Test func serverNameSelection() {
        let names = [
            ServerCertificateNames(exact: ["a.example.com"]),
            ServerCertificateNames(wildcardSuffixes: [".example.com"]),
            ServerCertificateNames(exact: ["b.example.com"]),
        ]
        #expect(ServerCertificateNames.select(serverName: "b.example.com", among: names) == 2)  // exact beats wildcard
        #expect(ServerCertificateNames.select(serverName: "B.EXAMPLE.COM.", among: names) == 2)
        #expect(ServerCertificateNames.select(serverName: "z.example.com", among: names) == 1)
        #expect(ServerCertificateNames.select(serverName: "example.com", among: names) == 0)
        #expect(ServerCertificateNames.select(serverName: ".example.com", among: names) == 0)
        #expect(ServerCertificateNames.select(serverName: "*.example.com", among: names) == 0)
        #expect(ServerCertificateNames.select(serverName: nil, among: names) == 0)
        #expect(ServerCertificateNames.select(serverName: "bad name.example.com", among: names) == 0)
    }

    @Test func civilTimeRoundTrips() {
        for seconds in [0, 951_782_400, 1_700_000_000, 2_524_608_000, 4_102_444_799] {
            let date = Date(timeIntervalSince1970: TimeInterval(seconds))
            let c = CivilTime.components(date)
            #expect(
                CivilTime.date(
                    year: c.year,
                    month: c.month,
                    day: c.day,
                    hours: c.hours,
                    minutes: c.minutes,
                    seconds: c.seconds
                )
                    == date
            )
        }
        let leapDay = CivilTime.components(Date(timeIntervalSince1970: 951_782_400))
        #expect([leapDay.year, leapDay.month, leapDay.day, leapDay.hours] as [Int] == [2000, 2, 29, 0])
    }
}
