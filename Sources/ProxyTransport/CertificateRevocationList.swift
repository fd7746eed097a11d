public import Foundation
import SwiftASN1
public import X509

/// An X.509 CRL (RFC 5280 section 5), parsed as far as revocation checking needs:
/// issuer, validity, revoked serial numbers and the signature over `tbsCertList`.
///
/// ```
/// CertificateList ::= SEQUENCE {
///     tbsCertList TBSCertList, signatureAlgorithm AlgorithmIdentifier, signatureValue BIT STRING }
/// TBSCertList ::= SEQUENCE {
///     version INTEGER OPTIONAL (v2), signature AlgorithmIdentifier, issuer Name,
///     thisUpdate Time, nextUpdate Time OPTIONAL,
///     revokedCertificates SEQUENCE OF SEQUENCE {
///         userCertificate INTEGER, revocationDate Time, crlEntryExtensions Extensions OPTIONAL } OPTIONAL,
///     crlExtensions [0] EXPLICIT Extensions OPTIONAL }
/// ```
///
/// Refused (fail closed, RFC 5280 5.2/5.3): an unknown *critical* CRL or entry extension, which covers
/// delta CRLs, partitioned (issuing distribution point) and indirect CRLs (certificate issuer entries).
public struct CertificateRevocationList: Sendable, Hashable {
    public var issuer: DistinguishedName
    public var thisUpdate: Date
    public var nextUpdate: Date?
    public var revokedSerialNumbers: Set<Certificate.SerialNumber>
    /// The `cRLNumber` extension, big-endian bytes, when present.
    public var crlNumber: ArraySlice<UInt8>?

    let tbsBytes: ArraySlice<UInt8>
    let signatureAlgorithm: Certificate.SignatureAlgorithm?
    let signatureAlgorithmOID: ASN1ObjectIdentifier
    let signatureBytes: ArraySlice<UInt8>

    /// Parses one DER-encoded CRL.
    public init(derEncoded bytes: [UInt8]) throws {
        let root = try DER.parse(bytes)
        var tbs: ASN1Node?
        var outerAlgorithm: ASN1ObjectIdentifier?
        var signature: ASN1BitString?
        try DER.sequence(root, identifier: .sequence) { nodes in
            tbs = nodes.next()
            guard let algorithm = nodes.next() else { throw Self.malformed("missing signatureAlgorithm") }
            outerAlgorithm = try Self.algorithmOID(algorithm)
            guard let value = nodes.next() else { throw Self.malformed("missing signatureValue") }
            signature = try ASN1BitString(derEncoded: value)
        }
        guard let tbs, let outerAlgorithm, let signature else { throw Self.malformed("missing tbsCertList") }
        guard signature.paddingBits == 0 else { throw Self.malformed("signature has padding bits") }

        var issuer: DistinguishedName?
        var thisUpdate: Date?
        var nextUpdate: Date?
        var revoked = Set<Certificate.SerialNumber>()
        var crlNumber: ArraySlice<UInt8>?
        try DER.sequence(tbs, identifier: .sequence) { nodes in
            var node = nodes.next()
            if let version = node, version.identifier == .integer {
                guard try Int(derEncoded: version) == 1 else { throw Self.malformed("unsupported CRL version") }
                node = nodes.next()
            }
            guard let innerAlgorithm = node else { throw Self.malformed("missing signature algorithm") }
            guard try Self.algorithmOID(innerAlgorithm) == outerAlgorithm else {
                throw Self.malformed("inner and outer signature algorithms differ")
            }
            guard let issuerNode = nodes.next() else { throw Self.malformed("missing issuer") }
            issuer = try DistinguishedName(derEncoded: issuerNode)
            guard let thisUpdateNode = nodes.next() else { throw Self.malformed("missing thisUpdate") }
            thisUpdate = try Self.time(thisUpdateNode)
            node = nodes.next()
            if let candidate = node, candidate.identifier == .utcTime || candidate.identifier == .generalizedTime {
                nextUpdate = try Self.time(candidate)
                node = nodes.next()
            }
            if let list = node, list.identifier == .sequence {
                try DER.sequence(list, identifier: .sequence) { entries in
                    while let entry = entries.next() {
                        try DER.sequence(entry, identifier: .sequence) { fields in
                            let serial = try ArraySlice<UInt8>(derEncoded: &fields)
                            guard let date = fields.next() else { throw Self.malformed("entry without revocationDate") }
                            _ = try Self.time(date)
                            if let extensions = fields.next() {
                                try Self.checkExtensions(extensions, place: "CRL entry")
                            }
                            revoked.insert(Certificate.SerialNumber(bytes: serial))
                        }
                    }
                }
                node = nodes.next()
            }
            if let tagged = node, tagged.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) {
                crlNumber = try DER.explicitlyTagged(tagged, tagNumber: 0, tagClass: .contextSpecific) { inner in
                    try Self.checkExtensions(inner, place: "CRL")
                }
                node = nodes.next()
            }
            if node != nil { throw Self.malformed("unexpected field after the extensions") }
        }
        guard let issuer, let thisUpdate else { throw Self.malformed("incomplete tbsCertList") }
        self.issuer = issuer
        self.thisUpdate = thisUpdate
        self.nextUpdate = nextUpdate
        self.revokedSerialNumbers = revoked
        self.crlNumber = crlNumber
        self.tbsBytes = tbs.encodedBytes
        self.signatureAlgorithmOID = outerAlgorithm
        self.signatureAlgorithm = Self.signatureAlgorithms[outerAlgorithm]
        self.signatureBytes = signature.bytes
    }

    /// Every CRL of a file: PEM (`X509 CRL` blocks, several allowed) or one DER CRL.
    public static func parse(fileContents bytes: [UInt8]) throws -> [CertificateRevocationList] {
        guard let documents = TLSFiles.documents(bytes, derType: "X509 CRL") else {
            throw Self.malformed("not a valid PEM file")
        }
        let lists = try documents.filter { $0.discriminator == "X509 CRL" }.map { try Self(derEncoded: $0.derBytes) }
        guard !lists.isEmpty else { throw Self.malformed("no X509 CRL in the file") }
        return lists
    }

    /// Whether `issuer` signed this CRL: its subject is the CRL's issuer, its key usage (if any) allows
    /// CRL signing, and the signature over `tbsCertList` verifies with its public key.
    public func isSigned(by issuer: Certificate) -> Bool {
        guard issuer.subject == self.issuer, let algorithm = self.signatureAlgorithm else { return false }
        if let keyUsage = try? issuer.extensions.keyUsage, !keyUsage.cRLSign { return false }
        return issuer.publicKey.isValidSignature(self.signatureBytes, for: self.tbsBytes, signatureAlgorithm: algorithm)
    }

    /// Whether `certificate` (issued by this CRL's issuer) is listed as revoked.
    public func revokes(_ certificate: Certificate) -> Bool {
        certificate.issuer == self.issuer && self.revokedSerialNumbers.contains(certificate.serialNumber)
    }

    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.tbsBytes == rhs.tbsBytes && lhs.signatureBytes == rhs.signatureBytes
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.tbsBytes)
        hasher.combine(self.signatureBytes)
    }

    // MARK: - Parsing helpers

    struct Malformed: Error, CustomStringConvertible {
        var reason: String
        var description: String { self.reason }
    }

    static func malformed(_ reason: String) -> Malformed { Malformed(reason: reason) }

    static let cRLNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]
    static let authorityKeyIdentifierOID: ASN1ObjectIdentifier = [2, 5, 29, 35]
    static let ecdsaWithSHA256OID: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]

    static let signatureAlgorithms: [ASN1ObjectIdentifier: Certificate.SignatureAlgorithm] = [
        [1, 2, 840, 10045, 4, 3, 2]: .ecdsaWithSHA256,
        [1, 2, 840, 10045, 4, 3, 3]: .ecdsaWithSHA384,
        [1, 2, 840, 10045, 4, 3, 4]: .ecdsaWithSHA512,
        [1, 2, 840, 113549, 1, 1, 11]: .sha256WithRSAEncryption,
        [1, 2, 840, 113549, 1, 1, 12]: .sha384WithRSAEncryption,
        [1, 2, 840, 113549, 1, 1, 13]: .sha512WithRSAEncryption,
        [1, 3, 101, 112]: .ed25519,
    ]

    static func algorithmOID(_ node: ASN1Node) throws -> ASN1ObjectIdentifier {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let oid = try ASN1ObjectIdentifier(derEncoded: &nodes)
            while nodes.next() != nil {}  // parameters (NULL for RSA), not needed to pick the algorithm
            return oid
        }
    }

    /// Refuses unknown critical extensions; returns the `cRLNumber` when present.
    @discardableResult
    static func checkExtensions(_ node: ASN1Node, place: String) throws -> ArraySlice<UInt8>? {
        let extensions = try DER.sequence(of: Certificate.Extension.self, identifier: .sequence, rootNode: node)
        var number: ArraySlice<UInt8>?
        for item in extensions {
            if item.oid == Self.cRLNumberOID {
                number = try ArraySlice<UInt8>(derEncoded: item.value)
            } else if item.critical {
                throw Self.malformed("unsupported critical \(place) extension \(item.oid)")
            }
        }
        return number
    }

    static func time(_ node: ASN1Node) throws -> Date {
        if node.identifier == .utcTime {
            let time = try UTCTime(derEncoded: node)
            return CivilTime.date(
                year: time.year,
                month: time.month,
                day: time.day,
                hours: time.hours,
                minutes: time.minutes,
                seconds: time.seconds
            )
        }
        let time = try GeneralizedTime(derEncoded: node)
        return CivilTime.date(
            year: time.year,
            month: time.month,
            day: time.day,
            hours: time.hours,
            minutes: time.minutes,
            seconds: time.seconds
        )
    }
}

/// UTC calendar arithmetic without Foundation's `Calendar` (days from civil, H. Hinnant).
enum CivilTime {
    static func date(year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int) -> Date {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let total = days * 86_400 + hours * 3_600 + minutes * 60 + seconds
        return Date(timeIntervalSince1970: TimeInterval(total))
    }

    /// (year, month, day, hours, minutes, seconds) of a date, whole seconds, UTC.
    static func components(_ date: Date) -> (year: Int, month: Int, day: Int, hours: Int, minutes: Int, seconds: Int) {
        let total = Int(date.timeIntervalSince1970.rounded(.down))
        var days = total / 86_400
        var rest = total % 86_400
        if rest < 0 {
            rest += 86_400
            days -= 1
        }
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day, rest / 3_600, (rest % 3_600) / 60, rest % 60)
    }

    /// UTCTime until 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
    static func serialize(_ date: Date, into coder: inout DER.Serializer) throws {
        let c = Self.components(date)
        if c.year < 2050 {
            try coder.serialize(
                UTCTime(
                    year: c.year,
                    month: c.month,
                    day: c.day,
                    hours: c.hours,
                    minutes: c.minutes,
                    seconds: c.seconds
                )
            )
        } else {
            try coder.serialize(
                GeneralizedTime(
                    year: c.year,
                    month: c.month,
                    day: c.day,
                    hours: c.hours,
                    minutes: c.minutes,
                    seconds: c.seconds,
                    fractionalSeconds: 0
                )
            )
        }
    }
}
