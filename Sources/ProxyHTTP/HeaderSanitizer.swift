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
        var out = ""
        out.reserveCapacity(name.utf8.count)
        for scalar in name.unicodeScalars {
            if scalar == "_" {
                out.unicodeScalars.append("-")
            } else if scalar.value >= 65 && scalar.value <= 90 {
                out.unicodeScalars.append(Unicode.Scalar(scalar.value + 32)!)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
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
