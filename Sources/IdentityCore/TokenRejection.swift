public import ProxyModel

/// Why a token was refused: a reason code (one of the `token_*` codes of ``ReasonCode``) and a short
/// description that is safe to show the client (RFC 6750 `error_description`): it never contains
/// the token, a claim value or key material.
public struct TokenRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: ReasonCode
    public let description: String

    public init(reason: ReasonCode, description: String) {
        self.reason = reason
        self.description = description
    }

    init(_ reason: ReasonCode, _ description: String) {
        self.init(reason: reason, description: description)
    }
}

extension TokenRejection {
    static func malformed(_ description: String) -> TokenRejection { TokenRejection(.tokenMalformed, description) }
    static func algorithm(_ description: String) -> TokenRejection {
        TokenRejection(.tokenAlgorithmNotAllowed, description)
    }
    static let tooLarge = TokenRejection(.tokenTooLarge, "token too large")
    static let signatureInvalid = TokenRejection(.tokenSignatureInvalid, "signature invalid")
}
