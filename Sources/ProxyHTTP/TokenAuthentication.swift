import IdentityCore
import NIOCore
import NIOHTTP1
import ProxyConfig
import ProxyModel

/// Where a bearer token comes from: `Authorization: Bearer`, or the route's `token_header` / `token_cookie`.
/// Never the query string.
enum BearerTokenSource {
    enum Extraction: Equatable {
        case none
        /// A slice of the header's value: the token is not copied.
        case token(Substring)
        /// An Authorization header that is present but unusable (several of them, or a Bearer without a token).
        case malformed
    }

    static func extract(from headers: HTTPHeaders, auth: RouteAuthConfig) -> Extraction {
        // One pass over the headers, no arrays: the common case is exactly one Authorization header.
        var authorization: String?
        for (name, value) in headers where HeaderSanitizer.equalsIgnoringASCIICase(name, "authorization") {
            if authorization != nil { return .malformed }
            authorization = value
        }
        if let value = authorization {
            var copy = value
            switch copy.withUTF8({ Self.bearer(in: $0) }) {
            case .token(let range):
                let bytes = value.utf8
                let start = bytes.index(bytes.startIndex, offsetBy: range.lowerBound)
                let end = bytes.index(bytes.startIndex, offsetBy: range.upperBound)
                return .token(Substring(bytes[start..<end]))
            case .malformed: return .malformed
            case .notBearer: break
            }
        }
        if let name = auth.tokenHeader {
            let values = headers[name]
            if values.count > 1 { return .malformed }
            if let value = values.first {
                let token = value.trimmingASCIISpaces()
                guard !token.isEmpty, isB64Token(token) else { return .malformed }
                return .token(token)
            }
        }
        if let name = auth.tokenCookie, let value = cookie(named: name, in: headers) {
            guard !value.isEmpty, isB64Token(value) else { return .malformed }
            return .token(value)
        }
        return .none
    }

    enum BearerScan: Equatable {
        /// Byte offsets of the token in the header value.
        case token(Range<Int>)
        case malformed
        /// Another scheme (Basic, ...): not ours to judge.
        case notBearer
    }

    /// `Bearer <b64token>` (scheme case-insensitive, spaces around), on the header's bytes.
    static func bearer(in value: UnsafeBufferPointer<UInt8>) -> BearerScan {
        var start = 0
        var end = value.count
        while start < end, value[start] == UInt8(ascii: " ") || value[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, value[end - 1] == UInt8(ascii: " ") || value[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        guard end - start >= 6 else { return .notBearer }
        let scheme: StaticString = "bearer"
        for offset in 0..<6 where value[start + offset] | 0x20 != scheme.utf8Start[offset] { return .notBearer }
        var tokenStart = start + 6
        guard tokenStart < end else { return .malformed }  // "Bearer" alone
        guard value[tokenStart] == UInt8(ascii: " ") else { return .notBearer }  // "Bearerx..."
        while tokenStart < end, value[tokenStart] == UInt8(ascii: " ") { tokenStart += 1 }
        guard tokenStart < end, Self.isB64Token(bytes: value[tokenStart..<end]) else {
            return .malformed
        }
        return .token(tokenStart..<end)
    }

    /// RFC 6750 b64token: ALPHA DIGIT - . _ ~ + / then any number of =.
    static func isB64Token(_ token: Substring) -> Bool { self.isB64Token(bytes: token.utf8) }

    static func isB64Token(bytes token: some Sequence<UInt8>) -> Bool {
        // A table lookup per byte: a bearer token is about 1 KB and is scanned on every request.
        let table = Self.b64TokenTable
        var sawPadding = false
        for byte in token {
            switch table[Int(byte)] {
            case 1:
                if sawPadding { return false }
            case 2:
                sawPadding = true
            default:
                return false
            }
        }
        return true
    }

    /// 1: a b64token character (ALPHA DIGIT - . _ ~ + /), 2: `=`, 0: anything else.
    private static let b64TokenTable: [UInt8] = (0..<256).map { value -> UInt8 in
        switch UInt8(value) {
        case UInt8(ascii: "="): return 2
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"):
            return 1
        default: return 0
        }
    }

    static func cookie(named name: String, in headers: HTTPHeaders) -> Substring? {
        for header in headers["cookie"] {
            for pair in header.split(separator: ";") {
                let trimmed = pair.trimmingASCIISpaces()
                guard let equals = trimmed.firstIndex(of: "=") else { continue }
                if trimmed[..<equals] == name {
                    return trimmed[trimmed.index(after: equals)...]
                }
            }
        }
        return nil
    }

    /// The Cookie header without the token cookie (it is a credential, like Authorization).
    static func removingCookie(named name: String, from headers: inout HTTPHeaders) {
        let values = headers["cookie"]
        guard !values.isEmpty else { return }
        headers.remove(name: "cookie")
        var kept: [Substring] = []
        for header in values {
            for pair in header.split(separator: ";") {
                let trimmed = pair.trimmingASCIISpaces()
                if let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name { continue }
                if !trimmed.isEmpty { kept.append(trimmed) }
            }
        }
        if !kept.isEmpty { headers.add(name: "cookie", value: kept.joined(separator: "; ")) }
    }
}

/// The identity stage for bearer tokens: parse, find the route's issuer by `iss`, cached or full
/// verification, and on an unknown `kid` one rate-limited JWKS refetch while the request waits (bounded).
struct TokenAuthenticator {
    /// How long a request waits for a refetch triggered by an unknown key.
    static let unknownKeyWait: TimeAmount = .seconds(2)

    static func challenge(_ rejection: TokenRejection?) -> String {
        guard let rejection else { return #"Bearer realm="portcullis""# }
        // The description is ours (fixed phrases), never the token; still keep it quote-free.
        let description = rejection.description.filter { $0 != "\"" && $0 != "\\" && !$0.isNewline }
        return #"Bearer realm="portcullis", error="invalid_token", error_description=""# + description + "\""
    }

    static func refused(_ rejection: TokenRejection) -> AuthenticationOutcome {
        .refused(rejection.reason, headers: [("www-authenticate", challenge(rejection))])
    }

    let counters: ProxyCounters

    func authenticate(
        token: Substring,
        route: CompiledRoute,
        registry: IdentityRegistry,
        loop: LoopContext,
        eventLoop: any EventLoop
    ) -> StageResult<AuthenticationOutcome> {
        guard let auth = route.config.auth else { return .ready(.identity(nil)) }
        let now = WallClock.nowSeconds()
        // Fast path: a route with one issuer looks the cache up before parsing anything.
        if auth.issuers.count == 1, let store = registry.stores[auth.issuers[0]], store.config.tokenCache,
            let keys = store.current,
            let hit = loop.tokenCache.lookup(
                token: token,
                audiences: auth.audiences ?? store.config.audiences,
                issuer: store.config.issuer,
                now: now
            ),
            Self.keyStillPresent(hit.keyID, in: keys)
        {
            self.counters.countCacheHit()
            return .ready(.identity(hit.principal))
        }
        var maxBytes = 0
        for name in auth.issuers { maxBytes = max(maxBytes, registry.stores[name]?.config.maxTokenBytes ?? 0) }
        if maxBytes == 0 { maxBytes = 8192 }
        let unverified: UnverifiedToken
        switch UnverifiedToken.parse(token, maxBytes: maxBytes) {
        case .success(let parsed): unverified = parsed
        case .failure(let rejection): return .ready(Self.refused(rejection))
        }
        guard let iss = unverified.issuer,
            let store = auth.issuers.lazy.compactMap({ registry.stores[$0] }).first(where: { $0.config.issuer == iss })
        else {
            return .ready(Self.refused(TokenRejection(reason: .tokenIssuerNotAccepted, description: "issuer not accepted here")))
        }
        guard let keys = store.current else {
            return .ready(.refused(.issuerKeysUnavailable, headers: [("retry-after", "5")]))
        }
        let audiences = auth.audiences ?? store.config.audiences
        if auth.issuers.count > 1, store.config.tokenCache,
            let hit = loop.tokenCache.lookup(token: token, audiences: audiences, issuer: store.config.issuer, now: now),
            Self.keyStillPresent(hit.keyID, in: keys)
        {
            self.counters.countCacheHit()
            return .ready(.identity(hit.principal))
        }
        switch self.verify(token, unverified, keys: keys, store: store, audiences: audiences, now: now, loop: loop) {
        case .valid(let verified):
            return .ready(.identity(verified.principal))
        case .rejected(let rejection):
            return .ready(Self.refused(rejection))
        case .unknownKey:
            // One refetch (rate-limited and single-flight in the JWKS service); the request waits, bounded.
            let done = eventLoop.makePromise(of: Void.self)
            let timer = eventLoop.scheduleTask(in: Self.unknownKeyWait) { done.succeed(()) }
            store.requestRefetch(done: done)
            let counters = self.counters
            let future = done.futureResult.hop(to: eventLoop).assumeIsolated().map { () -> AuthenticationOutcome in
                timer.cancel()
                guard let fresh = store.current else { return .refused(.issuerKeysUnavailable, headers: [("retry-after", "5")]) }
                let retry = TokenAuthenticator(counters: counters)
                switch retry.verify(
                    token,
                    unverified,
                    keys: fresh,
                    store: store,
                    audiences: audiences,
                    now: WallClock.nowSeconds(),
                    loop: loop
                ) {
                case .valid(let verified): return .identity(verified.principal)
                case .rejected(let rejection): return Self.refused(rejection)
                case .unknownKey:
                    return Self.refused(TokenRejection(reason: .tokenUnknownKey, description: "unknown signing key"))
                }
            }
            return .later(future.nonisolated())
        }
    }

    private func verify(
        _ token: Substring,
        _ unverified: UnverifiedToken,
        keys: JWKSet,
        store: IssuerKeyStore,
        audiences: [String],
        now: Int64,
        loop: LoopContext
    ) -> VerificationOutcome {
        self.counters.countVerification()
        let outcome = TokenVerifier.verify(unverified, keys: keys, policy: store.policy, audiences: audiences, now: now)
        if case .valid(let verified) = outcome, store.config.tokenCache {
            loop.tokenCache.insert(token: token, audiences: audiences, issuer: store.config.issuer, verified: verified)
        }
        return outcome
    }

    /// A cached token stays valid only while its key is still in the issuer's set.
    static func keyStillPresent(_ keyID: String?, in keys: JWKSet) -> Bool {
        if let keyID { return keys.keyIDs.contains(keyID) }
        return keys.keys.count == 1 && keys.keys[0].keyID == nil
    }
}

/// Identity headers (`identity_headers:`) rendered from the identity. Claims may hold CR, LF or NUL: bytes
/// outside printable ASCII (and `%`) are percent-encoded so nothing can split or smuggle a header.
enum IdentityHeaderRenderer {
    static func render(_ template: String, principal: Principal) -> String {
        var out = ""
        var index = template.startIndex
        while index < template.endIndex {
            let character = template[index]
            let next = template.index(after: index)
            if character == "$", next < template.endIndex, template[next] == "{",
                let close = template[next...].firstIndex(of: "}")
            {
                let name = template[template.index(after: next)..<close]
                out += value(of: name, principal: principal)
                index = template.index(after: close)
            } else {
                out.append(character)
                index = next
            }
        }
        return encode(out)
    }

    static func value(of name: Substring, principal: Principal) -> String {
        switch name {
        case "email": return principal.email ?? ""
        case "subject": return principal.subject ?? ""
        case "issuer": return principal.issuer ?? ""
        case "groups": return principal.groups.joined(separator: ",")
        default:
            guard name.hasPrefix("claims.") else { return "" }
            let path = String(name.dropFirst("claims.".count))
            guard let value = JSONValue.object(principal.claims).value(atPath: path) else { return "" }
            return text(value)
        }
    }

    static func text(_ value: JSONValue) -> String {
        switch value {
        case .null: return ""
        case .bool(let b): return b ? "true" : "false"
        case .integer(let i): return String(i)
        case .number(let d): return String(d)
        case .string(let s): return s
        case .array(let items): return items.map(text).joined(separator: ",")
        case .object: return ""
        }
    }

    static func encode(_ value: String) -> String {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(value.utf8.count)
        for byte in value.utf8 {
            if byte < 0x20 || byte >= 0x7F || byte == UInt8(ascii: "%") {
                bytes.append(UInt8(ascii: "%"))
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0xF)])
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
