public import Foundation
public import Logging
import NIOCore
public import NIOSSL
import SwiftASN1
@_spi(FixedExpiryValidationTime) public import X509

/// Verifies the certificate chain a TLS client presents: a path to one of the client CAs (RFC 5280:
/// signatures, validity, basic and name constraints), a leaf usable for client authentication
/// (extended key usage `clientAuth` or none; key usage `digitalSignature` or none), and no certificate
/// of the path revoked by a configured CRL.
///
/// Immutable and `Sendable`: a snapshot of the client CAs and CRLs, replaced as a whole on reload.
/// It replaces BoringSSL's own verification (NIOSSL's custom verification callback), so a refused
/// certificate fails the handshake with an alert.
public struct ClientCertificateVerifier: Sendable {
    /// The client CAs (trust anchors).
    public let certificateAuthorities: [Certificate]
    /// The CRLs in force, each checked at load to be signed by one of `certificateAuthorities`.
    public let revocationLists: [CertificateRevocationList]
    /// A path longer than this (leaf and intermediates as presented) is refused before any parsing.
    public static let maximumPresentedChainLength = 8

    let roots: CertificateStore

    /// - Throws: `TLSSetupError.untrustedCRL` (with `crlFile`) when a CRL is not signed by one of the CAs.
    public init(
        certificateAuthorities: [Certificate],
        revocationLists: [CertificateRevocationList] = [],
        crlFile: String? = nil
    ) throws(TLSSetupError) {
        for list in revocationLists where !certificateAuthorities.contains(where: { list.isSigned(by: $0) }) {
            throw TLSSetupError(
                .untrustedCRL,
                file: crlFile,
                reason: "the CRL of '\(list.issuer)' is not signed by any certificate of the client CA file"
            )
        }
        self.certificateAuthorities = certificateAuthorities
        self.revocationLists = revocationLists
        self.roots = CertificateStore(certificateAuthorities)
    }

    /// The outcome of a verification: a value, not a throw.
    public enum Result: Sendable {
        /// `chain` runs from the leaf to a client CA.
        case valid(chain: [Certificate])
        case invalid(reason: String)

        public var isValid: Bool {
            if case .valid = self { return true }
            return false
        }
    }

    /// Verifies a presented chain (leaf first, DER), against the current time unless `time` is given.
    public func verify(presentedChain: [[UInt8]], time: Date? = nil) async -> Result {
        guard let leafBytes = presentedChain.first else { return .invalid(reason: "no certificate presented") }
        guard presentedChain.count <= Self.maximumPresentedChainLength else {
            return .invalid(reason: "presented chain longer than \(Self.maximumPresentedChainLength) certificates")
        }
        let leaf: Certificate
        var intermediates: [Certificate] = []
        do {
            leaf = try Certificate(derEncoded: leafBytes)
            for bytes in presentedChain.dropFirst() { intermediates.append(try Certificate(derEncoded: bytes)) }
        } catch {
            return .invalid(reason: "a presented certificate does not parse")
        }
        let revocation = RevocationPolicy(lists: self.revocationLists)
        let result: CertificateValidationResult
        if let time {
            var verifier = Verifier(rootCertificates: self.roots) {
                RFC5280Policy(fixedExpiryValidationTime: time)
                ClientAuthenticationUsagePolicy()
                revocation
            }
            result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        } else {
            var verifier = Verifier(rootCertificates: self.roots) {
                RFC5280Policy()
                ClientAuthenticationUsagePolicy()
                revocation
            }
            result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        }
        switch result {
        case .validCertificate(let chain):
            return .valid(chain: Array(chain))
        case .couldNotValidate(let failures):
            if failures.isEmpty { return .invalid(reason: "no path to a client CA for '\(leaf.subject)'") }
            let reasons = failures.map { String(describing: $0.policyFailureReason) }
            return .invalid(reason: "'\(leaf.subject)': " + Set(reasons).sorted().joined(separator: "; "))
        }
    }

    /// A callback for `NIOSSLServerHandler(context:customVerificationCallback:)`.
    ///
    /// The chain is copied out as DER on the event loop; the verification itself runs in a task off the
    /// loop and completes the promise (NIOSSL resumes the handshake on the loop).
    public func makeVerificationCallback(logger: Logger) -> NIOSSLCustomVerificationCallback {
        { certificates, promise in
            let chain: [[UInt8]]
            do {
                guard certificates.count <= Self.maximumPresentedChainLength else {
                    logger.debug(
                        "client certificate refused: chain too long",
                        metadata: ["proxy_chain_length": "\(certificates.count)"]
                    )
                    promise.succeed(.failed)
                    return
                }
                chain = try certificates.map { try $0.toDERBytes() }
            } catch {
                promise.succeed(.failed)
                return
            }
            promise.completeWithTask {
                switch await self.verify(presentedChain: chain) {
                case .valid:
                    return .certificateVerified
                case .invalid(let reason):
                    logger.debug("client certificate refused", metadata: ["proxy_reason": "\(reason)"])
                    return .failed
                }
            }
        }
    }
}

/// Leaf usable for TLS client authentication, as BoringSSL's `X509_PURPOSE_SSL_CLIENT` checks it:
/// an extended key usage, if present, lists `clientAuth` (or `anyExtendedKeyUsage`); a key usage, if
/// present, allows `digitalSignature` or `keyAgreement`.
struct ClientAuthenticationUsagePolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [
        .X509ExtensionID.extendedKeyUsage,
        .X509ExtensionID.keyUsage,
        // The identity reads the SANs (critical when the subject is empty); there is nothing else to enforce.
        .X509ExtensionID.subjectAlternativeName,
    ]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        let leaf = chain.leaf
        do {
            if let usages = try leaf.extensions.extendedKeyUsage,
                !usages.contains(.clientAuth) && !usages.contains(.any)
            {
                return .failsToMeetPolicy(reason: "extended key usage does not allow client authentication")
            }
            if let keyUsage = try leaf.extensions.keyUsage, !keyUsage.digitalSignature && !keyUsage.keyAgreement {
                return .failsToMeetPolicy(reason: "key usage allows neither digitalSignature nor keyAgreement")
            }
            _ = try leaf.extensions.subjectAlternativeNames
        } catch {
            return .failsToMeetPolicy(reason: "malformed extension: \(error)")
        }
        return .meetsPolicy
    }
}

/// No certificate of the path (leaf or intermediate) is listed in a CRL of its issuer.
struct RevocationPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = []
    let lists: [CertificateRevocationList]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        guard !self.lists.isEmpty else { return .meetsPolicy }
        for certificate in chain.dropLast() where self.lists.contains(where: { $0.revokes(certificate) }) {
            let serial = certificate.serialNumber
            return .failsToMeetPolicy(reason: "certificate \(serial) of '\(certificate.subject)' is revoked")
        }
        return .meetsPolicy
    }
}
