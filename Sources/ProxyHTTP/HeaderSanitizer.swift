import NIOHTTP1
import ProxyModel

/// Header rules shared by both directions: hop-by-hop removal and the proxy's own header namespace.
enum HeaderSanitizer {
    /// RFC 9110 7.6.1 connection-specific fields, plus the non-standard ones proxies must also drop.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Lower case, `_` spelled `-`: `X_Portcullis_User` and `x-portcullis-user` are the same header to us
    /// (some upstream frameworks, e.g. CGI/WSGI, fold `-` to `_`, so a client could smuggle either spelling).
    static func canonicalName(_ name: String) -> String {
        let utf8 = name.utf8
        return String(unsafeUninitializedCapacity: utf8.count) { buffer in
            var index = 0
            for byte in utf8 {
                switch byte {
                case UInt8(ascii: "_"): buffer[index] = UInt8(ascii: "-")
                case UInt8(ascii: "A")...UInt8(ascii: "Z"): buffer[index] = byte + 32
                default: buffer[index] = byte
                }
                index += 1
            }
            return index
        }
    }

    /// Whether a canonical header name is in the proxy's reserved namespace.
    static func isReserved(_ canonical: String) -> Bool {
        canonical.hasPrefix("x-portcullis-")
    }

    /// The lower-cased tokens listed in Connection headers (they name further hop-by-hop headers), except
    /// those that are hop-by-hop anyway (callers drop those first): the usual `keep-alive` gives an empty set,
    /// which costs no allocation.
    static func connectionTokens(_ headers: HTTPHeaders) -> Set<String> {
        guard headers.contains(name: "connection") else { return [] }
        var tokens: Set<String> = []
        for value in headers[canonicalForm: "connection"] {
            let token = value.trimmingASCIISpaces().lowercased()
            if !token.isEmpty, !Self.hopByHop.contains(token) { tokens.insert(token) }
        }
        return tokens
    }

    /// The value of the one header named `name` (ASCII case-insensitive); nil when there is none or more
    /// than one. No allocation.
    static func soleValue(of name: StaticString, in headers: HTTPHeaders) -> String? {
        var found: String?
        for (candidate, value) in headers where Self.equalsIgnoringASCIICase(candidate, name) {
            if found != nil { return nil }
            found = value
        }
        return found
    }

    /// A header value that `canonicalForm` would give back unchanged as its only element: not empty, no comma,
    /// no space or tab at either end.
    static func isSingleListElement(_ value: String) -> Bool {
        let utf8 = value.utf8
        guard let first = utf8.first, let last = utf8.last else { return false }
        let blank: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        return !blank(first) && !blank(last) && !utf8.contains(UInt8(ascii: ","))
    }

    /// Whether a header name is `name` (lower case) in any ASCII case, without allocating.
    static func equalsIgnoringASCIICase(_ candidate: String, _ name: StaticString) -> Bool {
        guard candidate.utf8.count == name.utf8CodeUnitCount else { return false }
        var index = 0
        for byte in candidate.utf8 {
            let lower = (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
            if lower != name.utf8Start[index] { return false }
            index += 1
        }
        return true
    }

    /// A response from the upstream, made fit for the client: hop-by-hop fields removed, `Via` added.
    static func sanitizeResponse(_ head: HTTPResponseHead, clientVersion: HTTPVersion, requestID: String) -> HTTPResponseHead {
        var out = HTTPResponseHead(version: clientVersion, status: head.status)
        // One allocation for the copied headers and the two added, not one per doubling.
        out.headers.reserveCapacity(head.headers.count + 2)
        let listed = connectionTokens(head.headers)
        for (name, value) in head.headers {
            let lower = name.lowercased()
            if hopByHop.contains(lower) || listed.contains(lower) { continue }
            out.headers.add(name: name, value: value)
        }
        out.headers.add(name: "via", value: "1.1 portcullis")
        if !out.headers.contains(name: "x-request-id") {
            out.headers.add(name: "x-request-id", value: requestID)
        }
        return out
    }
}

extension String {
    func trimmingASCIISpaces() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

extension Substring {
    func trimmingASCIISpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
