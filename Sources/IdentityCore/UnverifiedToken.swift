public import ProxyModel

/// A compact JWS split and decoded, nothing verified: three strict-base64url segments and a header
/// that is a strict-JSON object. The payload is kept as bytes (a JWS payload need not be JSON).
struct CompactJWS: Sendable {
    var header: [String: JSONValue]
    var payload: [UInt8]
    /// `BASE64URL(header) "." BASE64URL(payload)`, the bytes the signature covers.
    var signingInput: [UInt8]
    var signature: [UInt8]
    var byteCount: Int

    static func parse(_ token: some StringProtocol, maxBytes: Int) -> Result<CompactJWS, TokenRejection> {
        let byteCount = token.utf8.count
        if byteCount > maxBytes { return .failure(.tooLarge) }
        if let result = token.utf8.withContiguousStorageIfAvailable({ parse(bytes: $0) }) { return result }
        var copy = String(token)
        return copy.withUTF8 { parse(bytes: $0) }
    }

    private static func parse(bytes: UnsafeBufferPointer<UInt8>) -> Result<CompactJWS, TokenRejection> {
        var firstDot = -1
        var secondDot = -1
        // Only the dots here: every other byte is checked against the alphabet while decoding.
        for index in bytes.indices where bytes[index] == UInt8(ascii: ".") {
            if firstDot < 0 {
                firstDot = index
            } else if secondDot < 0 {
                secondDot = index
            } else {
                return .failure(.malformed("token must have three segments"))
            }
        }
        guard secondDot >= 0 else { return .failure(.malformed("token must have three segments")) }
        guard let headerBytes = Base64URL.decode(buffer: UnsafeBufferPointer(rebasing: bytes[..<firstDot])),
            let payload = Base64URL.decode(buffer: UnsafeBufferPointer(rebasing: bytes[(firstDot + 1)..<secondDot])),
            let signature = Base64URL.decode(buffer: UnsafeBufferPointer(rebasing: bytes[(secondDot + 1)...]))
        else { return .failure(.malformed("token is not base64url")) }
        guard case .success(.object(let header)) = StrictJSON.parse(headerBytes, maxBytes: bytes.count) else {
            return .failure(.malformed("header is not a JSON object"))
        }
        return .success(
            CompactJWS(
                header: header,
                payload: payload,
                signingInput: Array(bytes[..<secondDot]),
                signature: signature,
                byteCount: bytes.count
            )
        )
    }

    /// The payload as a JWT claims set: a strict-JSON object.
    func claims(maxBytes: Int) -> Result<[String: JSONValue], TokenRejection> {
        guard case .success(.object(let claims)) = StrictJSON.parse(self.payload, maxBytes: maxBytes) else {
            return .failure(.malformed("payload is not a JSON object"))
        }
        return .success(claims)
    }
}

/// A JWT parsed but not verified: for choosing the issuer by `iss` before verification, and for
/// `portcullis token inspect`. Nothing here may be trusted until ``TokenVerifier`` says so.
public struct UnverifiedToken: Sendable {
    public let header: [String: JSONValue]
    public let claims: [String: JSONValue]
    /// Length of the token in bytes.
    public let byteCount: Int
    let jws: CompactJWS

    /// Splits and decodes a token: size bound, exactly three strict-base64url segments, header and
    /// payload strict-JSON objects (duplicate keys refused). Checks no signature and no claim.
    public static func parse(
        _ token: some StringProtocol,
        maxBytes: Int = 8192
    ) -> Result<UnverifiedToken, TokenRejection> {
        let jws: CompactJWS
        switch CompactJWS.parse(token, maxBytes: maxBytes) {
        case .success(let parsed): jws = parsed
        case .failure(let rejection): return .failure(rejection)
        }
        switch jws.claims(maxBytes: maxBytes) {
        case .success(let claims):
            return .success(UnverifiedToken(header: jws.header, claims: claims, byteCount: jws.byteCount, jws: jws))
        case .failure(let rejection):
            return .failure(rejection)
        }
    }

    /// `iss`, when it is a string.
    public var issuer: String? { self.claims["iss"]?.stringValue }
    /// The `kid` header, when it is a string.
    public var keyID: String? { self.header["kid"]?.stringValue }
    /// The `alg` header as written, when it is a string (not necessarily an algorithm we accept).
    public var algorithm: String? { self.header["alg"]?.stringValue }
}
