/// The JWS algorithms Portcullis verifies (RFC 7518 section 3, RFC 8037 for EdDSA over Ed25519).
///
/// There is deliberately no `none` and no HMAC case: a token naming either is refused before any
/// key is looked at, and no configuration can allow them.
public enum JWSAlgorithm: String, Sendable, Hashable, CaseIterable {
    case RS256, RS384, RS512
    case PS256, PS384, PS512
    case ES256, ES384
    case EdDSA

    /// The allow-list an issuer gets when its configuration names none (issue 4).
    public static let defaultAllowed: Set<JWSAlgorithm> = [.RS256, .PS256, .ES256, .EdDSA]

    /// The key type this algorithm verifies with.
    public var keyType: JWK.KeyType {
        switch self {
        case .RS256, .RS384, .RS512, .PS256, .PS384, .PS512: return .rsa
        case .ES256: return .ecP256
        case .ES384: return .ecP384
        case .EdDSA: return .ed25519
        }
    }
}
