/// Why TLS material (certificates, keys, CA bundles, CRLs) could not be loaded or used.
///
/// Always names the file at fault, never its contents (a private key never reaches a log line).
/// `Hashable` on the code and file only, so tests can compare against a code.
public struct TLSSetupError: Error, Hashable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case unreadableFile = "unreadable file"
            case invalidCertificate = "invalid certificate"
            case invalidPrivateKey = "invalid private key"
            case keyMismatch = "private key does not match certificate"
            case invalidCRL = "invalid CRL"
            case untrustedCRL = "CRL not signed by a client CA"
            case invalidConfiguration = "invalid TLS configuration"
            case contextFailed = "TLS context could not be built"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The file is missing, unreadable, empty or too large.
        public static let unreadableFile = Code(.unreadableFile)
        /// A certificate (or CA bundle) does not parse, holds no certificate, or is not usable.
        public static let invalidCertificate = Code(.invalidCertificate)
        /// A private key does not parse, is encrypted, or is of an unsupported type.
        public static let invalidPrivateKey = Code(.invalidPrivateKey)
        /// The private key belongs to another certificate.
        public static let keyMismatch = Code(.keyMismatch)
        /// The CRL file does not parse, or uses features we refuse (critical extensions, indirect CRLs).
        public static let invalidCRL = Code(.invalidCRL)
        /// The CRL's issuer is not one of the client CAs, or its signature does not verify.
        public static let untrustedCRL = Code(.untrustedCRL)
        /// The configuration itself is inconsistent (for example a CRL without a client CA).
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// BoringSSL refused to build a context from material that parsed.
        public static let contextFailed = Code(.contextFailed)

        public var description: String { self.base.rawValue }
    }

    public var code: Code
    /// The file at fault (absolute path), when there is one.
    public var file: String?
    /// What is wrong, without file contents.
    public var reason: String

    public init(_ code: Code, file: String?, reason: String) {
        self.code = code
        self.file = file
        self.reason = reason
    }

    public var description: String {
        if let file { return "\(file): \(self.code): \(self.reason)" }
        return "\(self.code): \(self.reason)"
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code && lhs.file == rhs.file }
    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.code)
        hasher.combine(self.file)
    }
}
