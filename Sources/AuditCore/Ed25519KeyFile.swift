import Crypto

/// Why an Ed25519 key file could not be read. Never holds key material.
/// `Hashable` on the code only, so tests can compare against a code.
public struct Ed25519KeyFileError: Error, Hashable, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case invalidEncoding = "invalid key file"
            case notEd25519 = "not an Ed25519 key"
            case unsupported = "unsupported key format"
            case wrongKind = "wrong kind of key"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Not PEM and not base64 of 32 bytes, bad base64, or a PEM block that is cut.
        public static let invalidEncoding = Code(.invalidEncoding)
        /// A key of another algorithm (RSA, EC, X25519, Ed448, ...) or DER that is not the Ed25519 encoding.
        public static let notEd25519 = Code(.notEd25519)
        /// An encrypted private key, or the OpenSSH format.
        public static let unsupported = Code(.unsupported)
        /// A private key where a public key was asked for, or the other way round.
        public static let wrongKind = Code(.wrongKind)

        public var description: String { self.base.rawValue }
    }

    public var code: Code
    /// What is wrong and what to do, without key material.
    public var reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(self.code): \(self.reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

/// Ed25519 keys as `openssl` writes them:
///
/// - `openssl genpkey -algorithm ed25519 -out key.pem`: PKCS #8 `PRIVATE KEY`, whose DER is the 16 bytes
///   `302e020100300506032b657004220420` and the 32-byte seed (the RFC 8410 form with the public key
///   appended, `3051020101…8121 00 <public key>`, is accepted too);
/// - `openssl pkey -in key.pem -pubout -out key.pub`: SPKI `PUBLIC KEY`, whose DER is the 12 bytes
///   `302a300506032b6570032100` and the 32-byte public key;
/// - or a file holding only the base64 of the raw 32 bytes.
public enum Ed25519KeyFile {
    static let pkcs8Prefix: [UInt8] = [
        0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ]
    static let pkcs8WithPublicKeyPrefix: [UInt8] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ]
    static let pkcs8PublicKeyTag: [UInt8] = [0x81, 0x21, 0x00]
    static let spkiPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// The 32-byte seed of an Ed25519 private key (what ``CheckpointSigner/init(rawPrivateKey:)`` takes).
    public static func privateKey(pem text: String) throws(Ed25519KeyFileError) -> [UInt8] {
        guard let block = try self.pemBlock(text) else {
            return try self.rawKey(text, what: "private key")
        }
        switch block.label {
        case "PRIVATE KEY":
            break
        case "PUBLIC KEY":
            throw Ed25519KeyFileError(.wrongKind, "this is a public key; a private key is needed here")
        default:
            throw self.otherLabel(block.label)
        }
        let der = block.der
        if der.count == 48, der.starts(with: self.pkcs8Prefix) {
            return Array(der[16...])
        }
        if der.count == 83, der.starts(with: self.pkcs8WithPublicKeyPrefix),
            Array(der[48..<51]) == self.pkcs8PublicKeyTag
        {
            let seed = Array(der[16..<48])
            let stated = Array(der[51...])
            guard let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed),
                Array(key.publicKey.rawRepresentation) == stated
            else {
                throw Ed25519KeyFileError(
                    .notEd25519,
                    "the public key in the PKCS #8 structure does not belong to its private key"
                )
            }
            return seed
        }
        throw Ed25519KeyFileError(.notEd25519, self.algorithmHint(der, expected: "PKCS #8 Ed25519 private key"))
    }

    /// The 32-byte Ed25519 public key (what ``CheckpointVerifier/init(rawPublicKey:)`` takes).
    public static func publicKey(pem text: String) throws(Ed25519KeyFileError) -> [UInt8] {
        guard let block = try self.pemBlock(text) else {
            return try self.rawKey(text, what: "public key")
        }
        switch block.label {
        case "PUBLIC KEY":
            break
        case "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
            throw Ed25519KeyFileError(
                .wrongKind,
                "this is a private key; give its public key (openssl pkey -in KEY -pubout -out KEY.pub), the private"
                    + " key"
                    + " stays with the writer"
            )
        default:
            throw self.otherLabel(block.label)
        }
        let der = block.der
        guard der.count == 44, der.starts(with: self.spkiPrefix) else {
            throw Ed25519KeyFileError(.notEd25519, self.algorithmHint(der, expected: "SPKI Ed25519 public key"))
        }
        return Array(der[12...])
    }

    // MARK: - PEM

    struct PEMBlock {
        var label: String
        var der: [UInt8]
    }

    /// The first PEM block of `text`, nil when the text has none.
    static func pemBlock(_ text: String) throws(Ed25519KeyFileError) -> PEMBlock? {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingASCIIWhitespace() }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") }) else {
            if text.contains("-----") {
                throw Ed25519KeyFileError(.invalidEncoding, "a PEM block without its BEGIN line")
            }
            return nil
        }
        let beginLine = lines[begin]
        guard beginLine.hasSuffix("-----"), beginLine.count > 16 else {
            throw Ed25519KeyFileError(.invalidEncoding, "a malformed PEM BEGIN line")
        }
        let label = String(beginLine.dropFirst(11).dropLast(5))
        guard let end = lines[(begin + 1)...].firstIndex(where: { $0.hasPrefix("-----END ") }) else {
            throw Ed25519KeyFileError(.invalidEncoding, "the PEM block \(label) has no END line (the file is cut)")
        }
        guard lines[end] == "-----END \(label)-----" else {
            throw Ed25519KeyFileError(.invalidEncoding, "the PEM block \(label) ends with another label")
        }
        let body = lines[(begin + 1)..<end]
        if body.contains(where: { $0.contains(":") }) {
            throw Ed25519KeyFileError(
                .unsupported,
                "an encrypted PEM key (Proc-Type/DEK-Info headers); decrypt it with openssl pkey"
            )
        }
        guard let der = Base64.decode(body.joined()), !der.isEmpty else {
            throw Ed25519KeyFileError(.invalidEncoding, "the PEM block \(label) is not valid base64")
        }
        return PEMBlock(label: label, der: der)
    }

    /// A file holding the base64 of the raw 32 bytes.
    static func rawKey(_ text: String, what: String) throws(Ed25519KeyFileError) -> [UInt8] {
        let trimmed = text.split(whereSeparator: \.isNewline).map { $0.trimmingASCIIWhitespace() }.joined()
        guard !trimmed.isEmpty else {
            throw Ed25519KeyFileError(
                .invalidEncoding,
                "the file is empty (expected a PEM \(what) or the base64 of its 32 bytes)"
            )
        }
        guard let bytes = Base64.decode(trimmed) else {
            throw Ed25519KeyFileError(
                .invalidEncoding,
                "neither PEM nor base64 (expected a PEM \(what) or the base64 of its 32 bytes)"
            )
        }
        guard bytes.count == 32 else {
            throw Ed25519KeyFileError(
                .invalidEncoding,
                "base64 of \(bytes.count) bytes; a raw Ed25519 \(what) is 32 bytes"
            )
        }
        return bytes
    }

    static func otherLabel(_ label: String) -> Ed25519KeyFileError {
        switch label {
        case "ENCRYPTED PRIVATE KEY":
            return Ed25519KeyFileError(
                .unsupported,
                "an encrypted private key; decrypt it (openssl pkey -in KEY -out PLAIN.pem)"
            )
        case "OPENSSH PRIVATE KEY":
            return Ed25519KeyFileError(.unsupported, "the OpenSSH key format; use openssl genpkey -algorithm ed25519")
        case "RSA PRIVATE KEY", "RSA PUBLIC KEY":
            return Ed25519KeyFileError(
                .notEd25519,
                "an RSA key; checkpoints are signed with Ed25519 (openssl genpkey -algorithm ed25519)"
            )
        case "EC PRIVATE KEY", "EC PARAMETERS":
            return Ed25519KeyFileError(
                .notEd25519,
                "an EC key; checkpoints are signed with Ed25519 (openssl genpkey -algorithm ed25519)"
            )
        case "CERTIFICATE":
            return Ed25519KeyFileError(.wrongKind, "a certificate; give the key itself")
        default:
            return Ed25519KeyFileError(.invalidEncoding, "a PEM block \(label), expected PRIVATE KEY or PUBLIC KEY")
        }
    }

    /// Names the algorithm of a DER key when it is a common one.
    static func algorithmHint(_ der: [UInt8], expected: String) -> String {
        let oids: [(bytes: [UInt8], name: String)] = [
            ([0x06, 0x03, 0x2B, 0x65, 0x6E], "an X25519 key"),
            ([0x06, 0x03, 0x2B, 0x65, 0x6F], "an X448 key"),
            ([0x06, 0x03, 0x2B, 0x65, 0x71], "an Ed448 key"),
            ([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01], "an RSA key"),
            ([0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01], "an EC key"),
        ]
        for oid in oids where der.firstRange(of: oid.bytes) != nil {
            return "\(oid.name), expected an \(expected) (openssl genpkey -algorithm ed25519)"
        }
        return "DER of \(der.count) bytes that is not an \(expected) as openssl writes it"
    }
}

extension Substring {
    fileprivate func trimmingASCIIWhitespace() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" || first == "\r" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        return text
    }
}

/// Standard base64 (RFC 4648 §4) with padding required; nil on anything else.
enum Base64 {
    static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 == 0 else { return nil }
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): return c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): return c - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0") + 52
            case UInt8(ascii: "+"): return 62
            case UInt8(ascii: "/"): return 63
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 4 * 3)
        var index = 0
        while index < chars.count {
            let isLast = index + 4 == chars.count
            let padding = isLast ? chars[index..<index + 4].reversed().prefix { $0 == UInt8(ascii: "=") }.count : 0
            guard padding <= 2 else { return nil }
            var group: UInt32 = 0
            for offset in 0..<4 {
                let c = chars[index + offset]
                if offset >= 4 - padding {
                    group <<= 6
                } else {
                    guard let v = value(c) else { return nil }
                    group = group << 6 | UInt32(v)
                }
            }
            out.append(UInt8(truncatingIfNeeded: group >> 16))
            if padding < 2 { out.append(UInt8(truncatingIfNeeded: group >> 8)) }
            if padding < 1 { out.append(UInt8(truncatingIfNeeded: group)) }
            index += 4
        }
        return out
    }
}
