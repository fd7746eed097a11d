import Crypto
import Foundation
import ProxyModel
import _CryptoExtras

@testable import IdentityCore

// Test-only key fixtures and token minting. Keys are generated once per test process.

/// A private key of each supported kind, able to sign a JWS signing input and to describe its
/// public half as a JWK.
enum TestSigner: Sendable {
    case rsa(_RSA.Signing.PrivateKey)
    case p256(P256.Signing.PrivateKey)
    case p384(P384.Signing.PrivateKey)
    case ed25519(Curve25519.Signing.PrivateKey)

    static let rsa = TestSigner.rsa(try! _RSA.Signing.PrivateKey(keySize: .bits2048))
    static let otherRSA = TestSigner.rsa(try! _RSA.Signing.PrivateKey(keySize: .bits2048))
    static let p256 = TestSigner.p256(P256.Signing.PrivateKey())
    static let otherP256 = TestSigner.p256(P256.Signing.PrivateKey())
    static let p384 = TestSigner.p384(P384.Signing.PrivateKey())
    static let ed25519 = TestSigner.ed25519(Curve25519.Signing.PrivateKey())

    /// The signer fitting an algorithm (the fixture keys above).
    static func `for`(_ algorithm: JWSAlgorithm) -> TestSigner {
        switch algorithm.keyType {
        case .rsa: return .rsa
        case .ecP256: return .p256
        case .ecP384: return .p384
        case .ed25519: return .ed25519
        }
    }

    /// Signs `input` as `algorithm` (named by string so tests can mislabel on purpose).
    func sign(_ input: [UInt8], as algorithm: String) -> [UInt8] {
        switch self {
        case .rsa(let key):
            let padding: _RSA.Signing.Padding = algorithm.hasPrefix("PS") ? .PSS : .insecurePKCS1v1_5
            let signature: _RSA.Signing.RSASignature
            switch algorithm.suffix(3) {
            case "384": signature = try! key.signature(for: SHA384.hash(data: input), padding: padding)
            case "512": signature = try! key.signature(for: SHA512.hash(data: input), padding: padding)
            default: signature = try! key.signature(for: SHA256.hash(data: input), padding: padding)
            }
            return Array(signature.rawRepresentation)
        case .p256(let key):
            return Array(try! key.signature(for: SHA256.hash(data: input)).rawRepresentation)
        case .p384(let key):
            return Array(try! key.signature(for: SHA384.hash(data: input)).rawRepresentation)
        case .ed25519(let key):
            return Array(try! key.signature(for: input))
        }
    }

    /// The public half as a JWK JSON object.
    func jwkJSON(kid: String?, alg: String? = nil, use: String? = "sig") -> String {
        var members: [String] = []
        switch self {
        case .rsa(let key):
            let primitives = try! key.publicKey.getKeyPrimitives()
            members += [
                #""kty":"RSA""#, #""n":"\#(b64(primitives.modulus))""#, #""e":"\#(b64(primitives.publicExponent))""#,
            ]
        case .p256(let key):
            let raw = Array(key.publicKey.rawRepresentation)
            members += [
                #""kty":"EC""#, #""crv":"P-256""#, #""x":"\#(b64(raw[..<32]))""#, #""y":"\#(b64(raw[32...]))""#,
            ]
        case .p384(let key):
            let raw = Array(key.publicKey.rawRepresentation)
            members += [
                #""kty":"EC""#, #""crv":"P-384""#, #""x":"\#(b64(raw[..<48]))""#, #""y":"\#(b64(raw[48...]))""#,
            ]
        case .ed25519(let key):
            members += [#""kty":"OKP""#, #""crv":"Ed25519""#, #""x":"\#(b64(key.publicKey.rawRepresentation))""#]
        }
        if let kid { members.append(#""kid":"\#(kid)""#) }
        if let alg { members.append(#""alg":"\#(alg)""#) }
        if let use { members.append(#""use":"\#(use)""#) }
        return "{" + members.joined(separator: ",") + "}"
    }

    func jwk(kid: String?, alg: JWSAlgorithm? = nil) -> JWK {
        let set = try! JWKSet.parse(Array(#"{"keys":[\#(self.jwkJSON(kid: kid, alg: alg?.rawValue))]}"#.utf8)).get()
        precondition(set.keys.count == 1)
        return set.keys[0]
    }

    /// DER (SubjectPublicKeyInfo) and PEM of the public key, for the HMAC-with-public-key attack.
    var publicKeyDER: [UInt8] {
        if case .rsa(let key) = self { return Array(key.publicKey.derRepresentation) }
        preconditionFailure("RSA only")
    }

    var publicKeyPEM: String {
        if case .rsa(let key) = self { return key.publicKey.pemRepresentation }
        preconditionFailure("RSA only")
    }
}

func b64(_ bytes: some Sequence<UInt8>) -> String { Base64URL.encode(Array(bytes)) }
func b64(_ text: String) -> String { Base64URL.encode(Array(text.utf8)) }

/// Builds compact tokens from raw JSON text (so tests can write duplicate keys and odd headers).
enum Mint {
    static let issuer = "https://issuer.example"
    static let audience = "airflow"
    static let now: Int64 = 1_700_000_000

    /// A claims set; `nil` leaves a claim out, extra members are appended verbatim.
    static func claims(
        iss: String? = Mint.issuer,
        sub: String? = "alice",
        aud: String? = #""airflow""#,
        exp: String? = "\(Mint.now + 600)",
        nbf: String? = nil,
        iat: String? = "\(Mint.now - 10)",
        extra: [String] = []
    ) -> String {
        var members: [String] = []
        if let iss { members.append(#""iss":"\#(iss)""#) }
        if let sub { members.append(#""sub":"\#(sub)""#) }
        if let aud { members.append(#""aud":\#(aud)"#) }
        if let exp { members.append(#""exp":\#(exp)"#) }
        if let nbf { members.append(#""nbf":\#(nbf)"#) }
        if let iat { members.append(#""iat":\#(iat)"#) }
        members += extra
        return "{" + members.joined(separator: ",") + "}"
    }

    static func header(alg: String, kid: String? = "k1", extra: [String] = []) -> String {
        var members = [#""alg":"\#(alg)""#, #""typ":"JWT""#]
        if let kid { members.append(#""kid":"\#(kid)""#) }
        members += extra
        return "{" + members.joined(separator: ",") + "}"
    }

    /// `header.payload.signature` with the signature computed by `signer` as `signAs` (defaults to the
    /// header's algorithm), or a fixed signature.
    static func token(header: String, payload: String, signer: TestSigner?, signAs: String) -> String {
        let input = b64(header) + "." + b64(payload)
        let signature = signer.map { b64($0.sign(Array(input.utf8), as: signAs)) } ?? ""
        return input + "." + signature
    }

    static func token(
        _ algorithm: JWSAlgorithm,
        signer: TestSigner? = nil,
        kid: String? = "k1",
        headerExtra: [String] = [],
        payload: String = Mint.claims()
    ) -> String {
        token(
            header: header(alg: algorithm.rawValue, kid: kid, extra: headerExtra),
            payload: payload,
            signer: signer ?? TestSigner.for(algorithm),
            signAs: algorithm.rawValue
        )
    }

    /// A key set holding the public half of `signers`, with kids k1, k2, ...
    static func keySet(_ signers: [TestSigner], kids: [String?]? = nil) -> JWKSet {
        let jwks = signers.enumerated().map { index, signer in
            signer.jwkJSON(kid: kids.map { $0[index] } ?? "k\(index + 1)")
        }
        return try! JWKSet.parse(Array(#"{"keys":[\#(jwks.joined(separator: ","))]}"#.utf8)).get()
    }

    static let policy = IssuerPolicy(issuer: Mint.issuer, algorithms: Set(JWSAlgorithm.allCases))
}

extension VerificationOutcome {
    var reason: ReasonCode? {
        if case .rejected(let rejection) = self { return rejection.reason }
        return nil
    }

    var verified: VerifiedToken? {
        if case .valid(let token) = self { return token }
        return nil
    }

    var isUnknownKey: Bool {
        if case .unknownKey = self { return true }
        return false
    }
}
