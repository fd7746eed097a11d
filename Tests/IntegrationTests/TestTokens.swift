import Crypto
import Foundation
import _CryptoExtras

/// Keys and tokens for the identity tests, made in the test process (the proxy only ever sees the JWKS).
struct TestSigner {
    enum Key {
        case p256(P256.Signing.PrivateKey)
        case rsa(_RSA.Signing.PrivateKey)
    }

    let key: Key
    let kid: String

    static func es256(kid: String) -> TestSigner { TestSigner(key: .p256(P256.Signing.PrivateKey()), kid: kid) }
    static func rs256(kid: String) throws -> TestSigner {
        TestSigner(key: .rsa(try _RSA.Signing.PrivateKey(keySize: .bits2048)), kid: kid)
    }

    var algorithm: String {
        switch self.key {
        case .p256: return "ES256"
        case .rsa: return "RS256"
        }
    }

    /// The public JWK (JSON object text).
    var jwk: String {
        switch self.key {
        case .p256(let key):
            let raw = key.publicKey.x963Representation
            return #"{"kty":"EC","crv":"P-256","use":"sig","alg":"ES256","kid":"\#(self.kid)","x":"\#(b64url(raw.dropFirst().prefix(32)))","y":"\#(b64url(raw.dropFirst(33)))"}"#
        case .rsa(let key):
            let primitives = try! key.publicKey.getKeyPrimitives()
            let (n, e) = (primitives.modulus, primitives.publicExponent)
            return #"{"kty":"RSA","use":"sig","alg":"RS256","kid":"\#(self.kid)","n":"\#(b64url(n))","e":"\#(b64url(e))"}"#
        }
    }

    /// PEM of the public key (what an attacker would use as an HMAC secret).
    var publicKeyPEM: String {
        switch self.key {
        case .p256(let key): return key.publicKey.pemRepresentation
        case .rsa(let key): return key.publicKey.pemRepresentation
        }
    }

    static func jwks(_ signers: [TestSigner]) -> String {
        #"{"keys":["# + signers.map(\.jwk).joined(separator: ",") + "]}"
    }

    /// A token with the given claims; `header` entries override the defaults (alg, typ, kid).
    func token(claims: [String: Any], header: [String: Any] = [:], kid: String? = nil) throws -> String {
        var fullHeader: [String: Any] = ["alg": self.algorithm, "typ": "JWT", "kid": kid ?? self.kid]
        for (k, v) in header { fullHeader[k] = v }
        let input =
            b64url(try JSONSerialization.data(withJSONObject: fullHeader, options: [.sortedKeys])) + "."
            + b64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let signature: Data
        switch self.key {
        case .p256(let key): signature = try key.signature(for: Data(input.utf8)).rawRepresentation
        case .rsa(let key):
            signature = try key.signature(for: Data(input.utf8), padding: .insecurePKCS1v1_5).rawRepresentation
        }
        return input + "." + b64url(signature)
    }

    static func claims(
        iss: String,
        aud: String,
        sub: String = "alice",
        groups: [String] = ["admins"],
        email: String = "alice@example.com",
        exp: Int? = nil
    ) -> [String: Any] {
        let now = Int(Date().timeIntervalSince1970)
        return ["iss": iss, "aud": aud, "sub": sub, "groups": groups, "email": email, "iat": now, "exp": exp ?? now + 600]
    }
}

/// An unsigned (`alg: none`) token, and an HS256 token keyed with a public key: attacks, not tokens.
enum AttackTokens {
    static func none(claims: [String: Any], alg: String = "none") throws -> String {
        b64url(try JSONSerialization.data(withJSONObject: ["alg": alg, "typ": "JWT"], options: [.sortedKeys])) + "."
            + b64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])) + "."
    }

    static func hs256(claims: [String: Any], secret: Data, kid: String) throws -> String {
        let input =
            b64url(try JSONSerialization.data(withJSONObject: ["alg": "HS256", "typ": "JWT", "kid": kid], options: [.sortedKeys]))
            + "." + b64url(try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys]))
        let mac = HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: secret))
        return input + "." + b64url(Data(mac))
    }
}

func b64url<D: DataProtocol>(_ data: D) -> String {
    Data(data).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

extension TestUpstream {
    /// Serves OIDC discovery and the JWKS of `signers`, as an identity provider at this upstream's address.
    func serveIssuer(signers: [TestSigner]) {
        let issuer = "http://127.0.0.1:\(self.port)"
        self.setResponse(path: "/.well-known/openid-configuration", body: #"{"issuer":"\#(issuer)","jwks_uri":"\#(issuer)/jwks"}"#)
        self.setResponse(path: "/jwks", body: TestSigner.jwks(signers))
    }
}
