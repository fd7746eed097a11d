public import NIOSSL
public import ProxyModel
import SwiftASN1
public import X509

extension ClientCertificateIdentity {
    /// The identity of a *verified* client certificate: the subject as an RFC 4514 string (most specific
    /// RDN first, e.g. `CN=worker,O=Example`), and the URI (SPIFFE IDs), DNS and email SANs in certificate order.
    ///
    /// Control characters never leave this function: in the subject they are escaped as `\XX` (RFC 4514
    /// hex pairs); a SAN holding one is dropped (no policy value can contain one, so no match changes).
    /// - Throws: when the SAN extension is malformed.
    public init(certificate: Certificate) throws {
        var uris: [String] = []
        var dnsNames: [String] = []
        var emails: [String] = []
        for name in try certificate.extensions.subjectAlternativeNames ?? SubjectAlternativeNames() {
            switch name {
            case .uniformResourceIdentifier(let value) where !Self.hasControlCharacters(value): uris.append(value)
            case .dnsName(let value) where !Self.hasControlCharacters(value): dnsNames.append(value)
            case .rfc822Name(let value) where !Self.hasControlCharacters(value): emails.append(value)
            default: continue
            }
        }
        // The most specific CN (the last one in DER order), when it is a printable string without controls.
        var commonName: String?
        for relativeName in certificate.subject {
            for attribute in relativeName where attribute.type == .RDNAttributeType.commonName {
                if let text = String(attribute.value), !Self.hasControlCharacters(text) { commonName = text }
            }
        }
        self.init(
            subject: Self.escapingControlCharacters(String(describing: certificate.subject)),
            commonName: commonName,
            uriSANs: uris,
            dnsSANs: dnsNames,
            emailSANs: emails
        )
    }

    /// The identity of a PEM certificate (for the policy tools; the chain is not verified here).
    public init(pemEncoded pem: String) throws {
        try self.init(certificate: Certificate(pemEncoded: pem))
    }

    /// The identity of a verified peer certificate as NIOSSL hands it out (`NIOSSLHandler.peerCertificate`).
    public init(certificate: NIOSSLCertificate) throws {
        try self.init(certificate: Certificate(derEncoded: certificate.toDERBytes()))
    }

    static func hasControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
    }

    static func escapingControlCharacters(_ text: String) -> String {
        guard Self.hasControlCharacters(text) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                result += "\\" + (hex.count == 1 ? "0" + hex : hex)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }
}

extension NIOSSLHandler {
    /// The client certificate identity of this connection after the handshake (nil without a certificate).
    /// Must be called on the channel's event loop, like every `NIOSSLHandler` property.
    public func clientCertificateIdentity() throws -> ClientCertificateIdentity? {
        try self.peerCertificate.map { try ClientCertificateIdentity(certificate: $0) }
    }
}
