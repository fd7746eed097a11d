import Crypto
public import ProxyModel
import _CryptoExtras

/// A token that passed every check, with the identity it establishes.
public struct VerifiedToken: Sendable, Equatable {
    public let principal: Principal
    /// `exp`, seconds since the epoch (a fractional `exp` is rounded down).
    public let expiresAt: Int64
    /// The `kid` of the token header (nil when the token had none: single-key set).
    public let keyID: String?
    public let issuer: String
    /// RFC 7638 thumbprint of the key that verified the signature.
    public let keyThumbprint: String?

    public init(principal: Principal, expiresAt: Int64, keyID: String?, issuer: String, keyThumbprint: String? = nil) {
        self.principal = principal
        self.expiresAt = expiresAt
        self.keyID = keyID
        self.issuer = issuer
        self.keyThumbprint = keyThumbprint
    }
}

public enum VerificationOutcome: Sendable, Equatable {
    case valid(VerifiedToken)
    case rejected(TokenRejection)
    /// The token names a kid the set does not hold (or the set is empty): the caller may refetch the
    /// JWKS (rate-limited, see ``JWKSRefreshStateMachine``) and verify again.
    case unknownKey(kid: String?)
}

/// Verifies JWTs against an issuer's key set and policy. Pure and synchronous: no I/O, no clock
/// (time is `now:`), no actor, no default key. Nothing in the token (`jku`, `x5u`, `jwk`, `x5c`)
/// is ever used to find a key: only the set passed in.
///
/// Order of checks: size; three strict-base64url segments; header (strict JSON); `alg` (never
/// `none` or HMAC, then the issuer's allow-list); `crit` (any entry refuses: we understand none);
/// `kid` type; payload (strict JSON); `iss` (before any key lookup, so that a token for another
/// issuer never causes a refetch of this one's keys); key selection; signature; claims.
public enum TokenVerifier {
    public static func verify(
        _ token: some StringProtocol,
        keys: JWKSet,
        policy: IssuerPolicy,
        audiences: [String],
        now: Int64
    ) -> VerificationOutcome {
        switch UnverifiedToken.parse(token, maxBytes: policy.maxTokenBytes) {
        case .success(let parsed):
            return self.verify(parsed, keys: keys, policy: policy, audiences: audiences, now: now)
        case .failure(let rejection): return .rejected(rejection)
        }
    }

    /// Verifies a token already parsed (for routing by `iss`), without parsing it again.
    public static func verify(
        _ token: UnverifiedToken,
        keys: JWKSet,
        policy: IssuerPolicy,
        audiences: [String],
        now: Int64
    ) -> VerificationOutcome {
        if token.byteCount > policy.maxTokenBytes { return .rejected(.tooLarge) }
        let header = token.header
        let algorithm: JWSAlgorithm
        switch self.checkHeader(header, allowed: policy.algorithms) {
        case .success(let checked): algorithm = checked
        case .failure(let rejection): return .rejected(rejection)
        }
        let claims = token.claims
        switch claims["iss"] {
        case nil: return .rejected(TokenRejection(.tokenMissingClaim, "iss missing"))
        case .string(let issuer)? where issuer == policy.issuer: break
        case .string?: return .rejected(TokenRejection(.tokenIssuerNotAccepted, "issuer not accepted"))
        case _?: return .rejected(.malformed("iss is not a string"))
        }

        // Key selection: only the set. An unknown kid is the one case the caller may refetch for.
        let keyID = token.keyID
        let candidates: [JWK]
        if keys.keys.isEmpty { return .unknownKey(kid: keyID) }
        if let keyID {
            candidates = keys.keys(withID: keyID)
            if candidates.isEmpty { return .unknownKey(kid: keyID) }
        } else if keys.keys.count == 1 {
            candidates = keys.keys
        } else {
            return .rejected(TokenRejection(.tokenUnknownKey, "kid required: the issuer has several keys"))
        }
        let usable = candidates.filter { $0.accepts(algorithm) }
        if usable.isEmpty { return .rejected(.algorithm("algorithm does not fit the key")) }
        guard
            let key = usable.first(where: {
                self.isValidSignature(token.jws.signature, over: token.jws.signingInput, algorithm: algorithm, key: $0)
            })
        else { return .rejected(.signatureInvalid) }

        switch self.checkClaims(claims, header: header, policy: policy, audiences: audiences, now: now) {
        case .success(let principal):
            return .valid(
                VerifiedToken(
                    principal: principal,
                    expiresAt: principal.expiresAt ?? 0,
                    keyID: keyID,
                    issuer: policy.issuer,
                    keyThumbprint: key.thumbprint
                )
            )
        case .failure(let rejection):
            return .rejected(rejection)
        }
    }

    /// The signature layer alone: structure, header (`alg`, `crit`) and the signature over the
    /// signing input with `key`. No claim is looked at and the payload need not be JSON, so that
    /// published test vectors (RFC 7515, 7520, 8037) can be checked as they are.
    /// Returns the algorithm that verified.
    public static func verifySignature(
        token: some StringProtocol,
        key: JWK,
        allowedAlgorithms: Set<JWSAlgorithm> = Set(JWSAlgorithm.allCases),
        maxBytes: Int = 8192
    ) -> Result<JWSAlgorithm, TokenRejection> {
        let jws: CompactJWS
        switch CompactJWS.parse(token, maxBytes: maxBytes) {
        case .success(let parsed): jws = parsed
        case .failure(let rejection): return .failure(rejection)
        }
        let algorithm: JWSAlgorithm
        switch self.checkHeader(jws.header, allowed: allowedAlgorithms) {
        case .success(let checked): algorithm = checked
        case .failure(let rejection): return .failure(rejection)
        }
        guard key.accepts(algorithm) else { return .failure(.algorithm("algorithm does not fit the key")) }
        guard self.isValidSignature(jws.signature, over: jws.signingInput, algorithm: algorithm, key: key) else {
            return .failure(.signatureInvalid)
        }
        return .success(algorithm)
    }

    // MARK: - Header

    static func checkHeader(
        _ header: [String: JSONValue],
        allowed: Set<JWSAlgorithm>
    ) -> Result<JWSAlgorithm, TokenRejection> {
        guard let value = header["alg"] else { return .failure(.malformed("alg missing")) }
        guard case .string(let name) = value else { return .failure(.malformed("alg is not a string")) }
        // `alg` is case-sensitive (RFC 7515 4.1.1), so `None` is not `none`; refuse every spelling anyway.
        if name.lowercased() == "none" { return .failure(.algorithm("unsigned tokens are never accepted")) }
        if name.uppercased().hasPrefix("HS") { return .failure(.algorithm("HMAC algorithms are never accepted")) }
        guard let algorithm = JWSAlgorithm(rawValue: name) else { return .failure(.algorithm("unsupported algorithm")) }
        guard allowed.contains(algorithm) else { return .failure(.algorithm("algorithm not allowed for this issuer")) }
        if let crit = header["crit"] {
            // RFC 7515 4.1.11: an array of names; empty is malformed. We implement no extension, so
            // any well-formed `crit` names something we do not understand.
            guard case .array(let names) = crit, !names.isEmpty, names.allSatisfy({ $0.stringValue != nil }) else {
                return .failure(.malformed("crit is malformed"))
            }
            return .failure(TokenRejection(.tokenCriticalHeader, "unsupported critical header"))
        }
        if let kid = header["kid"], kid.stringValue == nil { return .failure(.malformed("kid is not a string")) }
        return .success(algorithm)
    }

    // MARK: - Signature

    static func isValidSignature(_ signature: [UInt8], over input: [UInt8], algorithm: JWSAlgorithm, key: JWK) -> Bool {
        switch (algorithm, key.material) {
        case (.RS256, .rsa(let publicKey, let size)):
            return signature.count == size
                && publicKey.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature),
                    for: SHA256.hash(data: input),
                    padding: .insecurePKCS1v1_5
                )
        case (.RS384, .rsa(let publicKey, let size)):
            return signature.count == size
                && publicKey.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature),
                    for: SHA384.hash(data: input),
                    padding: .insecurePKCS1v1_5
                )
        case (.RS512, .rsa(let publicKey, let size)):
            return signature.count == size
                && publicKey.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature),
                    for: SHA512.hash(data: input),
                    padding: .insecurePKCS1v1_5
                )
        // PSS with MGF1 over the same hash and a salt as long as the hash (RFC 7518 3.5).
        case (.PS256, .rsa(let publicKey, let size)):
            return signature.count == size
                && publicKey.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature),
                    for: SHA256.hash(data: input),
                    padding: .PSS
                )
        case (.PS384, .rsa(let publicKey, let size)):
            return signature.count == size
                && publicKey.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature),
                    for: SHA384.hash(data: input),
                    padding: .PSS
                )
        case (.PS512, .rsa(let publicKey, let size)):
            return signature.count == size
                && publicKey.isValidSignature(
                    _RSA.Signing.RSASignature(rawRepresentation: signature),
                    for: SHA512.hash(data: input),
                    padding: .PSS
                )
        // ECDSA: the JWS form is r || s, each exactly the curve size (RFC 7518 3.4), never DER.
        case (.ES256, .p256(let publicKey)):
            guard self.isWellFormedECDSA(signature, coordinateBytes: 32),
                let ecdsa = try? P256.Signing.ECDSASignature(rawRepresentation: signature)
            else { return false }
            return publicKey.isValidSignature(ecdsa, for: SHA256.hash(data: input))
        case (.ES384, .p384(let publicKey)):
            guard self.isWellFormedECDSA(signature, coordinateBytes: 48),
                let ecdsa = try? P384.Signing.ECDSASignature(rawRepresentation: signature)
            else { return false }
            return publicKey.isValidSignature(ecdsa, for: SHA384.hash(data: input))
        case (.EdDSA, .ed25519(let publicKey)):
            return signature.count == 64 && publicKey.isValidSignature(signature, for: input)
        default:
            return false
        }
    }

    /// Exact length, and neither r nor s zero (the "psychic signature" shape, CVE-2022-21449); the
    /// library also checks both are below the group order.
    private static func isWellFormedECDSA(_ signature: [UInt8], coordinateBytes: Int) -> Bool {
        guard signature.count == 2 * coordinateBytes else { return false }
        let r = signature[..<coordinateBytes]
        let s = signature[coordinateBytes...]
        return r.contains(where: { $0 != 0 }) && s.contains(where: { $0 != 0 })
    }

    // MARK: - Claims

    static func checkClaims(
        _ claims: [String: JSONValue],
        header: [String: JSONValue],
        policy: IssuerPolicy,
        audiences: [String],
        now: Int64
    ) -> Result<Principal, TokenRejection> {
        let skew = max(0, policy.clockSkew)

        // exp: required; valid while exp > now - skew.
        let expiresAt: Int64
        switch NumericDate.parse(claims["exp"], name: "exp") {
        case .failure(let rejection): return .failure(rejection)
        case .success(nil): return .failure(TokenRejection(.tokenMissingClaim, "exp missing"))
        case .success(let exp?):
            guard exp.isAfter(now.subtractingSaturated(skew)) else {
                return .failure(TokenRejection(.tokenExpired, "token expired"))
            }
            expiresAt = exp.floor
        }
        // nbf and iat: optional; not after now + skew.
        switch NumericDate.parse(claims["nbf"], name: "nbf") {
        case .failure(let rejection): return .failure(rejection)
        case .success(let nbf?) where nbf.isAfter(now.addingSaturated(skew)):
            return .failure(TokenRejection(.tokenNotYetValid, "token not yet valid"))
        case .success: break
        }
        switch NumericDate.parse(claims["iat"], name: "iat") {
        case .failure(let rejection): return .failure(rejection)
        case .success(let iat?) where iat.isAfter(now.addingSaturated(skew)):
            return .failure(TokenRejection(.tokenIssuedInFuture, "token issued in the future"))
        case .success: break
        }

        // aud: a string or an array of strings, containing one of the accepted audiences.
        let tokenAudiences: [String]
        switch claims["aud"] {
        case nil: return .failure(TokenRejection(.tokenMissingClaim, "aud missing"))
        case .string(let audience)?: tokenAudiences = [audience]
        case .array(let values)?:
            var strings: [String] = []
            strings.reserveCapacity(values.count)
            for value in values {
                guard case .string(let audience) = value else {
                    return .failure(.malformed("aud is not a string or an array of strings"))
                }
                strings.append(audience)
            }
            tokenAudiences = strings
        case _?: return .failure(.malformed("aud is not a string or an array of strings"))
        }
        guard tokenAudiences.contains(where: { audiences.contains($0) }) else {
            return .failure(TokenRejection(.tokenAudienceMismatch, "audience not accepted"))
        }

        if let required = policy.requiredType {
            guard case .string(let type)? = header["typ"] else {
                return .failure(TokenRejection(.tokenTypeMismatch, "token type not accepted"))
            }
            guard MediaType.normalized(type) == MediaType.normalized(required) else {
                return .failure(TokenRejection(.tokenTypeMismatch, "token type not accepted"))
            }
        }

        let subject: String
        switch claims["sub"] {
        case nil: return .failure(TokenRejection(.tokenMissingClaim, "sub missing"))
        case .string(let value)?: subject = value
        case _?: return .failure(.malformed("sub is not a string"))
        }

        var principal = self.principal(claims: claims, policy: policy)
        principal.subject = subject
        principal.expiresAt = expiresAt
        return .success(principal)
    }

    /// The identity in a token's claims as policy sees it: the issuer's `email_claim` and `groups_claim`
    /// (a string or an array of strings), `sub`, `exp` when an integer, and every claim.
    /// No check happens here: the proxy calls it on verified tokens only; the policy tools call it on
    /// claims the operator wrote.
    public static func principal(claims: [String: JSONValue], policy: IssuerPolicy) -> Principal {
        let groups: [String]
        switch self.claim(policy.groupsClaim, in: claims) {
        case .string(let group)?: groups = [group]
        case .array(let values)?: groups = values.compactMap(\.stringValue)
        default: groups = []
        }
        return Principal(
            issuer: policy.issuer,
            subject: claims["sub"]?.stringValue,
            email: self.claim(policy.emailClaim, in: claims)?.stringValue,
            groups: groups,
            claims: claims,
            expiresAt: claims["exp"]?.int64Value
        )
    }

    /// A claim by exact top-level name first (names such as `https://example.com/roles` contain dots),
    /// then as a dotted path into nested objects (`realm_access.roles`).
    static func claim(_ name: String, in claims: [String: JSONValue]) -> JSONValue? {
        if let value = claims[name] { return value }
        guard name.contains(".") else { return nil }
        return JSONValue.object(claims).value(atPath: name)
    }
}

/// A JWT NumericDate (RFC 7519 2): a JSON number, integer or not.
enum NumericDate {
    case integer(Int64)
    case number(Double)

    /// nil when absent; a rejection when present but not a number.
    static func parse(_ value: JSONValue?, name: String) -> Result<NumericDate?, TokenRejection> {
        switch value {
        case nil: return .success(nil)
        case .integer(let i)?: return .success(.integer(i))
        case .number(let d)?: return .success(.number(d))
        case _?: return .failure(.malformed("\(name) is not a number"))
        }
    }

    /// self > instant
    func isAfter(_ instant: Int64) -> Bool {
        switch self {
        case .integer(let i): return i > instant
        case .number(let d): return d > Double(instant)
        }
    }

    /// Rounded down, clamped to Int64.
    var floor: Int64 {
        switch self {
        case .integer(let i): return i
        case .number(let d):
            let rounded = d.rounded(.down)
            if rounded >= 9.223372036854775e18 { return .max }
            if rounded <= -9.223372036854775e18 { return .min }
            return Int64(rounded)
        }
    }
}

/// `typ` comparison (RFC 7515 4.1.9): case-insensitive, `application/` optional when the rest has no `/`.
enum MediaType {
    static func normalized(_ value: String) -> String {
        let lower = value.lowercased()
        let prefix = "application/"
        if lower.hasPrefix(prefix) {
            let rest = lower.dropFirst(prefix.count)
            if !rest.contains("/") { return String(rest) }
        }
        return lower
    }
}

extension Int64 {
    func addingSaturated(_ other: Int64) -> Int64 {
        let (result, overflow) = self.addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : result
    }

    func subtractingSaturated(_ other: Int64) -> Int64 {
        let (result, overflow) = self.subtractingReportingOverflow(other)
        return overflow ? (other > 0 ? .min : .max) : result
    }
}
