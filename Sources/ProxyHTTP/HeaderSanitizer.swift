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

    /// The lower-cased tokens listed in Connection headers (they name further hop-by-hop headers).
    static func connectionTokens(_ headers: HTTPHeaders) -> Set<String> {
        var tokens: Set<String> = []
        for value in headers[canonicalForm: "connection"] {
            let token = value.trimmingASCIISpaces().lowercased()
            if !token.isEmpty { tokens.insert(token) }
        }
        return tokens
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
