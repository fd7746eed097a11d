import Crypto
public import Foundation
import ProxyModel
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The files ``DevCertificates/generate(in:serverNames:clientSPIFFEID:clientEmail:validity:now:)`` wrote
/// (absolute paths).
public struct DevCertificateFiles: Sendable, Equatable {
    public var directory: String
    /// The development CA (`ca.pem`, key `ca-key.pem`): trust it for the server, and use it as `client_ca`.
    public var caCertificate: String
    public var caPrivateKey: String
    /// The server certificate for the requested names (`server.pem`, `server-key.pem`).
    public var serverCertificate: String
    public var serverPrivateKey: String
    /// A client certificate with the SPIFFE URI SAN and an email SAN (`client.pem`, `client-key.pem`).
    public var clientCertificate: String
    public var clientPrivateKey: String
    /// A second client certificate, listed in the CRL (`revoked-client.pem`, `revoked-client-key.pem`).
    public var revokedClientCertificate: String
    public var revokedClientPrivateKey: String
    /// A CRL signed by the CA revoking the second client certificate (`crl.pem`).
    public var crl: String
}

/// Development certificates, made with swift-certificates and swift-crypto (P-256 keys): a CA, a server
/// certificate, a client certificate, a revoked client certificate and a CRL. Private keys are written
/// with mode 0600. For development and tests only; the CA key sits next to the certificates.
public enum DevCertificates {
    /// Writes the files into `directory` (created if missing), replacing earlier ones.
    ///
    /// - Parameters:
    ///   - serverNames: DNS names and IP literals of the server certificate (`localhost`, `127.0.0.1`, `::1`);
    ///     the first is also its common name.
    ///   - clientSPIFFEID: the URI SAN of the client certificate (`spiffe://example.com/airflow/worker`).
    ///   - clientEmail: the email SAN of the client certificate.
    ///   - validity: how long the leaf certificates and the CRL are valid (the CA a day longer).
    public static func generate(
        in directory: String,
        serverNames: [String],
        clientSPIFFEID: String,
        clientEmail: String = "dev-client@portcullis.invalid",
        validity: Duration = .seconds(30 * 24 * 3_600),
        now: Date = Date()
    ) throws -> DevCertificateFiles {
        guard !serverNames.isEmpty else {
            throw TLSSetupError(.invalidConfiguration, file: nil, reason: "at least one server name is required")
        }
        let seconds = TimeInterval(validity.components.seconds)
        let notBefore = now.addingTimeInterval(-300)
        let notAfter = now.addingTimeInterval(seconds)

        let authority = try DevCertificateAuthority(
            commonName: "Portcullis development CA",
            notBefore: notBefore,
            notAfter: notAfter.addingTimeInterval(86_400)
        )
        let server = try authority.issueServerCertificate(names: serverNames, notBefore: notBefore, notAfter: notAfter)
        let client = try authority.issueClientCertificate(
            commonName: "portcullis dev client",
            uris: [clientSPIFFEID],
            emails: [clientEmail],
            notBefore: notBefore,
            notAfter: notAfter
        )
        let revoked = try authority.issueClientCertificate(
            commonName: "portcullis dev client (revoked)",
            uris: [clientSPIFFEID + "-revoked"],
            emails: [],
            notBefore: notBefore,
            notAfter: notAfter
        )
        let crl = try authority.makeCRL(
            revoking: [(revoked.certificate.serialNumber, now)],
            thisUpdate: notBefore,
            nextUpdate: notAfter
        )

        try FileManager.default.createDirectory(
            atPath: directory,
            withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700]
        )
        let base = URL(fileURLWithPath: directory).standardizedFileURL.path
        func path(_ name: String) -> String { base + "/" + name }
        let files = DevCertificateFiles(
            directory: base,
            caCertificate: path("ca.pem"),
            caPrivateKey: path("ca-key.pem"),
            serverCertificate: path("server.pem"),
            serverPrivateKey: path("server-key.pem"),
            clientCertificate: path("client.pem"),
            clientPrivateKey: path("client-key.pem"),
            revokedClientCertificate: path("revoked-client.pem"),
            revokedClientPrivateKey: path("revoked-client-key.pem"),
            crl: path("crl.pem")
        )
        try Self.write(authority.certificatePEM(), to: files.caCertificate, mode: 0o644)
        try Self.write(authority.key.pemRepresentation, to: files.caPrivateKey, mode: 0o600)
        try Self.write(server.certificatePEM(), to: files.serverCertificate, mode: 0o644)
        try Self.write(server.key.pemRepresentation, to: files.serverPrivateKey, mode: 0o600)
        try Self.write(client.certificatePEM(), to: files.clientCertificate, mode: 0o644)
        try Self.write(client.key.pemRepresentation, to: files.clientPrivateKey, mode: 0o600)
        try Self.write(revoked.certificatePEM(), to: files.revokedClientCertificate, mode: 0o644)
        try Self.write(revoked.key.pemRepresentation, to: files.revokedClientPrivateKey, mode: 0o600)
        try Self.write(PEMDocument(type: "X509 CRL", derBytes: crl).pemString + "\n", to: files.crl, mode: 0o644)
        return files
    }

    /// Creates or truncates `path` with `mode` (also when it existed with looser permissions) and writes `text`.
    static func write(_ text: String, to path: String, mode: mode_t) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else {
            throw TLSSetupError(.unreadableFile, file: path, reason: "can not be created (errno \(errno))")
        }
        defer { close(descriptor) }
        guard fchmod(descriptor, mode) == 0 else {
            throw TLSSetupError(.unreadableFile, file: path, reason: "permissions can not be set (errno \(errno))")
        }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { posixWrite(descriptor, $0.baseAddress, $0.count) }
            guard written > 0 else {
                throw TLSSetupError(.unreadableFile, file: path, reason: "write failed (errno \(errno))")
            }
            bytes = bytes.dropFirst(written)
        }
    }
}

private func posixWrite(_ descriptor: Int32, _ pointer: UnsafeRawPointer?, _ count: Int) -> Int {
    write(descriptor, pointer, count)
}

/// A P-256 certificate and its key.
struct DevIssuedCertificate {
    var certificate: Certificate
    var key: P256.Signing.PrivateKey

    func certificatePEM() throws -> String { try self.certificate.serializeAsPEM().pemString + "\n" }

    var keyPEM: String { self.key.pemRepresentation }
}

/// A throwaway CA that issues server and client certificates and CRLs (development and tests).
struct DevCertificateAuthority {
    let certificate: Certificate
    let key: P256.Signing.PrivateKey

    init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.key = key
    }

    /// The CA of a ``DevCertificates`` folder (`ca.pem`, `ca-key.pem`).
    static func load(certificate: String, key: String) throws -> DevCertificateAuthority {
        DevCertificateAuthority(
            certificate: try Certificate(pemEncoded: String(contentsOfFile: certificate, encoding: .utf8)),
            key: try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: key, encoding: .utf8))
        )
    }

    init(commonName: String, notBefore: Date, notAfter: Date) throws {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let name = try DistinguishedName {
            OrganizationName("Portcullis development")
            CommonName(commonName)
        }
        self.key = key
        self.certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: name,
            subject: name,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: publicKey)
            },
            issuerPrivateKey: Certificate.PrivateKey(key)
        )
    }

    func certificatePEM() throws -> String { try self.certificate.serializeAsPEM().pemString + "\n" }

    private var authorityKeyIdentifier: AuthorityKeyIdentifier {
        let subjectKeyIdentifier = try? self.certificate.extensions.subjectKeyIdentifier
        return AuthorityKeyIdentifier(keyIdentifier: subjectKeyIdentifier?.keyIdentifier)
    }

    /// DNS SANs for names, IP SANs for IPv4/IPv6 literals; `serverAuth`.
    func issueServerCertificate(names: [String], notBefore: Date, notAfter: Date) throws -> DevIssuedCertificate {
        var alternativeNames: [GeneralName] = []
        for name in names {
            switch IPAddress.parse(name) {
            case .v4(let value)?:
                alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: Self.bytes(value)[...])))
            case .v6(let high, let low)?:
                alternativeNames.append(
                    .ipAddress(ASN1OctetString(contentBytes: (Self.bytes(high) + Self.bytes(low))[...]))
                )
            case nil:
                alternativeNames.append(.dnsName(name))
            }
        }
        return try self.issue(
            commonName: names[0],
            alternativeNames: alternativeNames,
            usage: .serverAuth,
            notBefore: notBefore,
            notAfter: notAfter
        )
    }

    /// URI and email SANs; `clientAuth`.
    func issueClientCertificate(
        commonName: String,
        uris: [String],
        emails: [String],
        dnsNames: [String] = [],
        notBefore: Date,
        notAfter: Date
    ) throws -> DevIssuedCertificate {
        try self.issue(
            commonName: commonName,
            alternativeNames: uris.map { .uniformResourceIdentifier($0) } + dnsNames.map { .dnsName($0) }
                + emails.map { .rfc822Name($0) },
            usage: .clientAuth,
            notBefore: notBefore,
            notAfter: notAfter
        )
    }

    func issue(
        commonName: String,
        alternativeNames: [GeneralName],
        usage: ExtendedKeyUsage.Usage,
        notBefore: Date,
        notAfter: Date
    ) throws -> DevIssuedCertificate {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let authorityKeyIdentifier = self.authorityKeyIdentifier
        let certificate = try Certificate(
            version: .v3,
            serialNumber: Certificate.SerialNumber(),
            publicKey: publicKey,
            notValidBefore: notBefore,
            notValidAfter: notAfter,
            issuer: self.certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("Portcullis development")
                CommonName(commonName)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([usage])
                SubjectAlternativeNames(alternativeNames)
                SubjectKeyIdentifier(hash: publicKey)
                authorityKeyIdentifier
            },
            issuerPrivateKey: Certificate.PrivateKey(self.key)
        )
        return DevIssuedCertificate(certificate: certificate, key: key)
    }

    /// A v2 CRL (DER) listing `revoked`, with `cRLNumber` and `authorityKeyIdentifier`, signed ECDSA-SHA256.
    func makeCRL(
        revoking revoked: [(Certificate.SerialNumber, Date)],
        thisUpdate: Date,
        nextUpdate: Date?,
        number: Int = 1,
        signedBy signer: P256.Signing.PrivateKey? = nil
    ) throws -> [UInt8] {
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)  // v2
            try coder.appendConstructedNode(identifier: .sequence) { algorithm in
                try algorithm.serialize(CertificateRevocationList.ecdsaWithSHA256OID)
            }
            try coder.serialize(self.certificate.subject)
            try CivilTime.serialize(thisUpdate, into: &coder)
            if let nextUpdate { try CivilTime.serialize(nextUpdate, into: &coder) }
            if !revoked.isEmpty {
                try coder.appendConstructedNode(identifier: .sequence) { list in
                    for (serial, date) in revoked {
                        try list.appendConstructedNode(identifier: .sequence) { entry in
                            try entry.serialize(serial.bytes)
                            try CivilTime.serialize(date, into: &entry)
                        }
                    }
                }
            }
            try coder.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                tagged in
                try tagged.appendConstructedNode(identifier: .sequence) { extensions in
                    var numberCoder = DER.Serializer()
                    try numberCoder.serialize(number)
                    try extensions.serialize(
                        Certificate.Extension(
                            oid: CertificateRevocationList.cRLNumberOID,
                            critical: false,
                            value: numberCoder.serializedBytes[...]
                        )
                    )
                    try extensions.serialize(Certificate.Extension(self.authorityKeyIdentifier, critical: false))
                }
            }
        }
        let tbsBytes = tbs.serializedBytes
        let signature = try (signer ?? self.key).signature(for: tbsBytes).derRepresentation
        var list = DER.Serializer()
        try list.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbsBytes)
            try coder.appendConstructedNode(identifier: .sequence) { algorithm in
                try algorithm.serialize(CertificateRevocationList.ecdsaWithSHA256OID)
            }
            try coder.serialize(ASN1BitString(bytes: Array(signature)[...]))
        }
        return list.serializedBytes
    }

    static func bytes<I: FixedWidthInteger>(_ value: I) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }
}

extension DevCertificateFiles {
    /// The files of an earlier `DevCertificates.generate` in `directory`, when they are all there.
    public static func existing(in directory: String) -> DevCertificateFiles? {
        func path(_ name: String) -> String { directory + "/" + name }
        let files = DevCertificateFiles(
            directory: directory,
            caCertificate: path("ca.pem"),
            caPrivateKey: path("ca-key.pem"),
            serverCertificate: path("server.pem"),
            serverPrivateKey: path("server-key.pem"),
            clientCertificate: path("client.pem"),
            clientPrivateKey: path("client-key.pem"),
            revokedClientCertificate: path("revoked-client.pem"),
            revokedClientPrivateKey: path("revoked-client-key.pem"),
            crl: path("crl.pem")
        )
        let all = [files.caCertificate, files.serverCertificate, files.serverPrivateKey, files.crl]
        return all.allSatisfy { FileManager.default.fileExists(atPath: $0) } ? files : nil
    }
}
