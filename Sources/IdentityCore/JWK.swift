import Crypto
import ProxyModel
import _CryptoExtras

/// One verification key from a JWKS: RSA (`n`, `e`, at least 2048 bits), EC P-256 or P-384
/// (`x`, `y`), or OKP Ed25519 (`x`); with its `kid` and its own `alg` when the document gives them.
///
/// A JWK is a public key only; private members (`d`, `p`, ...) in a document are ignored.
public struct JWK: Sendable {
    public enum KeyType: String, Sendable, Hashable, CaseIterable {
        case rsa = "RSA"
        case ecP256 = "EC P-256"
        case ecP384 = "EC P-384"
        case ed25519 = "OKP Ed25519"
    }

    /// Smallest RSA modulus accepted; smaller keys in a document are skipped.
    public static let minimumRSABits = 2048
    /// Largest RSA modulus accepted (bounds the cost of one verification); larger keys are skipped.
    public static let maximumRSABits = 8192

    public let keyID: String?
    /// The key's own `alg`: when present, only that algorithm verifies with this key.
    public let algorithm: JWSAlgorithm?
    public let keyType: KeyType
    /// RFC 7638 JWK thumbprint (SHA-256, base64url): identifies the key material itself, whatever its `kid`.
    public let thumbprint: String

    let material: Material

    enum Material: Sendable {
        case rsa(_RSA.Signing.PublicKey, modulusByteCount: Int)
        case p256(P256.Signing.PublicKey)
        case p384(P384.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    private init(keyID: String?, algorithm: JWSAlgorithm?, keyType: KeyType, thumbprint: String, material: Material) {
        self.keyID = keyID
        self.algorithm = algorithm
        self.keyType = keyType
        self.thumbprint = thumbprint
        self.material = material
    }

    /// True when a token signed with `algorithm` may be verified with this key: the key type fits
    /// the algorithm, and the key's own `alg` (when it has one) is that algorithm.
    public func accepts(_ algorithm: JWSAlgorithm) -> Bool {
        algorithm.keyType == self.keyType && (self.algorithm == nil || self.algorithm == algorithm)
    }
}

// MARK: - Construction from key material

extension JWK {
    /// An RSA key from its big-endian modulus and exponent.
    public init(
        rsaModulus n: [UInt8],
        exponent e: [UInt8],
        keyID: String? = nil,
        algorithm: JWSAlgorithm? = nil
    ) throws(JWKSetError) {
        if let algorithm, algorithm.keyType != .rsa { throw JWKSetError(.malformedKey, "alg does not fit an RSA key") }
        let n = n.drop(while: { $0 == 0 })
        let e = e.drop(while: { $0 == 0 })
        guard let first = n.first, !e.isEmpty else { throw JWKSetError(.malformedKey, "RSA key without n or e") }
        let bits = (n.count - 1) * 8 + (8 - first.leadingZeroBitCount)
        guard bits >= JWK.minimumRSABits, bits <= JWK.maximumRSABits else {
            throw JWKSetError(.unsupportedKey, "RSA key of \(bits) bits")
        }
        let key: _RSA.Signing.PublicKey
        do {
            key = try _RSA.Signing.PublicKey(n: Array(n), e: Array(e))
        } catch {
            throw JWKSetError(.malformedKey, "RSA key refused by the crypto library")
        }
        let thumbprint = JWK.thumbprint(members: [
            ("e", Base64URL.encode(e)), ("kty", "RSA"), ("n", Base64URL.encode(n)),
        ])
        self.init(
            keyID: keyID,
            algorithm: algorithm,
            keyType: .rsa,
            thumbprint: thumbprint,
            material: .rsa(key, modulusByteCount: n.count)
        )
    }

    /// An EC key (P-256 or P-384) from its affine coordinates, each exactly the curve's size.
    public init(
        ecKeyType keyType: KeyType,
        x: [UInt8],
        y: [UInt8],
        keyID: String? = nil,
        algorithm: JWSAlgorithm? = nil
    ) throws(JWKSetError) {
        if let algorithm, algorithm.keyType != keyType {
            throw JWKSetError(.malformedKey, "alg does not fit the curve")
        }
        let material: Material
        let curve: String
        do {
            switch keyType {
            case .ecP256:
                guard x.count == 32, y.count == 32 else { throw JWKSetError(.malformedKey, "P-256 coordinate length") }
                material = .p256(try P256.Signing.PublicKey(rawRepresentation: x + y))
                curve = "P-256"
            case .ecP384:
                guard x.count == 48, y.count == 48 else { throw JWKSetError(.malformedKey, "P-384 coordinate length") }
                material = .p384(try P384.Signing.PublicKey(rawRepresentation: x + y))
                curve = "P-384"
            case .rsa, .ed25519:
                throw JWKSetError(.malformedKey, "not an EC key type")
            }
        } catch let error as JWKSetError {
            throw error
        } catch {
            throw JWKSetError(.malformedKey, "EC point not on the curve")
        }
        let thumbprint = JWK.thumbprint(members: [
            ("crv", curve), ("kty", "EC"), ("x", Base64URL.encode(x)), ("y", Base64URL.encode(y)),
        ])
        self.init(keyID: keyID, algorithm: algorithm, keyType: keyType, thumbprint: thumbprint, material: material)
    }

    /// An Ed25519 key from its 32-byte public key.
    public init(ed25519PublicKey x: [UInt8], keyID: String? = nil, algorithm: JWSAlgorithm? = nil) throws(JWKSetError) {
        if let algorithm, algorithm != .EdDSA { throw JWKSetError(.malformedKey, "alg does not fit an Ed25519 key") }
        guard x.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: x) else {
            throw JWKSetError(.malformedKey, "Ed25519 key length")
        }
        let thumbprint = JWK.thumbprint(members: [("crv", "Ed25519"), ("kty", "OKP"), ("x", Base64URL.encode(x))])
        self.init(
            keyID: keyID,
            algorithm: algorithm,
            keyType: .ed25519,
            thumbprint: thumbprint,
            material: .ed25519(key)
        )
    }

    /// RFC 7638: SHA-256 over the required members, sorted, without whitespace. The member values here
    /// are base64url or fixed names, so they need no JSON escaping.
    private static func thumbprint(members: [(String, String)]) -> String {
        var text = "{"
        for (index, (name, value)) in members.enumerated() {
            if index > 0 { text += "," }
            text += "\"\(name)\":\"\(value)\""
        }
        text += "}"
        return Base64URL.encode(Array(SHA256.hash(data: Array(text.utf8))))
    }
}

// MARK: - Parsing a JWK object

extension JWK {
    enum Parsed {
        case key(JWK)
        /// Not a key we can use (another key type or curve, `use` other than `sig`, an algorithm we never
        /// accept, an RSA key outside the size bounds): left out of the set, counted.
        case skipped
    }

    /// Parses one member of a JWKS `keys` array.
    static func parse(_ value: JSONValue) -> Result<Parsed, JWKSetError> {
        guard case .object(let object) = value else {
            return .failure(JWKSetError(.malformedKey, "key is not an object"))
        }
        func optionalString(_ name: String) -> Result<String?, JWKSetError> {
            switch object[name] {
            case nil: return .success(nil)
            case .string(let s)?: return .success(s)
            case _?: return .failure(JWKSetError(.malformedKey, "\(name) is not a string"))
            }
        }
        func bytes(_ name: String) -> Result<[UInt8], JWKSetError> {
            guard case .string(let s)? = object[name] else {
                return .failure(JWKSetError(.malformedKey, "\(name) missing or not a string"))
            }
            guard let decoded = Base64URL.decode(s), !decoded.isEmpty else {
                return .failure(JWKSetError(.malformedKey, "\(name) is not base64url"))
            }
            return .success(decoded)
        }
        do throws(JWKSetError) {
            guard let kty = try optionalString("kty").get() else { throw JWKSetError(.malformedKey, "kty missing") }
            let keyID = try optionalString("kid").get()
            if let use = try optionalString("use").get(), use != "sig" { return .success(.skipped) }
            if let operations = object["key_ops"] {
                guard case .array(let array) = operations, array.allSatisfy({ $0.stringValue != nil }) else {
                    throw JWKSetError(.malformedKey, "key_ops is not an array of strings")
                }
                if !array.contains(.string("verify")) { return .success(.skipped) }
            }
            var algorithm: JWSAlgorithm?
            if let name = try optionalString("alg").get() {
                // A key bound to an algorithm we never accept (HS256, RSA-OAEP, ES512, ...) is no use to us.
                guard let known = JWSAlgorithm(rawValue: name) else { return .success(.skipped) }
                algorithm = known
            }
            switch kty {
            case "RSA":
                let n = try bytes("n").get()
                let e = try bytes("e").get()
                do {
                    return .success(.key(try JWK(rsaModulus: n, exponent: e, keyID: keyID, algorithm: algorithm)))
                } catch  where error.code == .unsupportedKey {
                    return .success(.skipped)
                }
            case "EC":
                let keyType: KeyType
                switch try optionalString("crv").get() {
                case "P-256": keyType = .ecP256
                case "P-384": keyType = .ecP384
                case nil: throw JWKSetError(.malformedKey, "crv missing")
                default: return .success(.skipped)
                }
                let x = try bytes("x").get()
                let y = try bytes("y").get()
                return .success(.key(try JWK(ecKeyType: keyType, x: x, y: y, keyID: keyID, algorithm: algorithm)))
            case "OKP":
                switch try optionalString("crv").get() {
                case "Ed25519": break
                case nil: throw JWKSetError(.malformedKey, "crv missing")
                default: return .success(.skipped)
                }
                let x = try bytes("x").get()
                return .success(.key(try JWK(ed25519PublicKey: x, keyID: keyID, algorithm: algorithm)))
            default:
                return .success(.skipped)
            }
        } catch {
            return .failure(error)
        }
    }
}

// MARK: - Key set

/// Why a JWKS document was refused. `Hashable` on the code only.
public struct JWKSetError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case notJSON = "not strict JSON"
            case notAKeySet = "not a JWK set"
            case malformedKey = "malformed key"
            case unsupportedKey = "unsupported key"
            case tooManyKeys = "too many keys"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The document is not strict JSON (duplicate keys included).
        public static let notJSON = Code(.notJSON)
        /// The document is not an object with a `keys` array.
        public static let notAKeySet = Code(.notAKeySet)
        /// A key of a supported type is missing members or holds invalid material.
        public static let malformedKey = Code(.malformedKey)
        /// A key we do not use (only thrown by the key initializers; ``JWKSet/parse(_:)`` skips such keys).
        public static let unsupportedKey = Code(.unsupportedKey)
        /// More keys than ``JWKSet/maxKeys``.
        public static let tooManyKeys = Code(.tooManyKeys)

        public var description: String { self.base.rawValue }
    }

    public let code: Code
    /// Index of the offending key in `keys`, when one key is at fault.
    public var keyIndex: Int?
    /// What exactly is wrong; names members, never includes key material.
    public let detail: String

    public init(_ code: Code, _ detail: String, keyIndex: Int? = nil) {
        self.code = code
        self.detail = detail
        self.keyIndex = keyIndex
    }

    public var description: String {
        if let keyIndex { return "\(self.code) (key \(keyIndex)): \(self.detail)" }
        return "\(self.code): \(self.detail)"
    }

    public static func == (lhs: JWKSetError, rhs: JWKSetError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }
}

/// An immutable key set: a `Sendable` snapshot that the refresher swaps whole, never mutates.
public struct JWKSet: Sendable {
    /// A document with more keys than this is refused (bounds parsing and candidate search).
    public static let maxKeys = 100
    /// Largest JWKS document accepted.
    public static let maxDocumentBytes = 1 << 20

    public let keys: [JWK]
    public let keyIDs: Set<String>
    /// Keys in the document that are not usable here (see ``JWK``), left out of ``keys``.
    public let skippedKeyCount: Int
    private let indexesByKeyID: [String: [Int]]

    public init(keys: [JWK]) {
        self.init(keys: keys, skippedKeyCount: 0)
    }

    init(keys: [JWK], skippedKeyCount: Int) {
        self.keys = keys
        self.skippedKeyCount = skippedKeyCount
        var index: [String: [Int]] = [:]
        for (position, key) in keys.enumerated() {
            if let kid = key.keyID { index[kid, default: []].append(position) }
        }
        self.indexesByKeyID = index
        self.keyIDs = Set(index.keys)
    }

    /// An empty set: every token gets ``VerificationOutcome/unknownKey(kid:)``.
    public static let empty = JWKSet(keys: [])

    /// Parses a JWKS document (`{"keys":[...]}`, RFC 7517 section 5). Keys of other types, curves,
    /// uses or algorithms are skipped and counted; a malformed key of a supported type refuses the
    /// whole document (the caller keeps its last good set).
    public static func parse(_ bytes: [UInt8]) -> Result<JWKSet, JWKSetError> {
        let document: JSONValue
        switch StrictJSON.parse(bytes, maxDepth: 8, maxBytes: JWKSet.maxDocumentBytes) {
        case .success(let value): document = value
        case .failure(let error): return .failure(JWKSetError(.notJSON, "\(error)"))
        }
        guard case .object(let object) = document, case .array(let members)? = object["keys"] else {
            return .failure(JWKSetError(.notAKeySet, "no keys array"))
        }
        if members.count > JWKSet.maxKeys {
            return .failure(JWKSetError(.tooManyKeys, "\(members.count) keys, at most \(JWKSet.maxKeys)"))
        }
        var keys: [JWK] = []
        var skipped = 0
        for (index, member) in members.enumerated() {
            switch JWK.parse(member) {
            case .success(.key(let key)): keys.append(key)
            case .success(.skipped): skipped += 1
            case .failure(var error):
                error.keyIndex = index
                return .failure(error)
            }
        }
        return .success(JWKSet(keys: keys, skippedKeyCount: skipped))
    }

    /// The keys with this `kid`, in document order.
    func keys(withID keyID: String) -> [JWK] {
        guard let positions = self.indexesByKeyID[keyID] else { return [] }
        return positions.map { self.keys[$0] }
    }
}
