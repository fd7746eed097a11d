/// The query as the audit trail records it: parameter names kept, every value replaced by `REDACTED`
/// except parameters the route allow-lists (`audit_query: [page, dag_id]`). Names are compared as written
/// (after percent-decoding of unreserved characters, no case folding). A parameter without `=` is redacted
/// whole unless allow-listed (a bare `?abc123` may be a secret).
public enum QueryRedaction {
    public static let placeholder = "REDACTED"

    public static func redact(_ query: Substring, keeping allowed: Set<String>) -> String {
        var out = ""
        out.reserveCapacity(query.utf8.count)
        var first = true
        for pair in query.split(separator: "&", omittingEmptySubsequences: false) {
            if !first { out.append("&") }
            first = false
            guard let equals = pair.firstIndex(of: "=") else {
                // A bare `?abc123` may itself be the secret: only allow-listed names stay.
                if pair.isEmpty || allowed.contains(String(pair)) || allowed.contains(self.decodeUnreserved(pair)) {
                    out.append(contentsOf: pair)
                } else {
                    out.append(self.placeholder)
                }
                continue
            }
            let name = pair[..<equals]
            out.append(contentsOf: name)
            out.append("=")
            if allowed.contains(String(name)) || allowed.contains(self.decodeUnreserved(name)) {
                out.append(contentsOf: pair[pair.index(after: equals)...])
            } else if equals != pair.index(before: pair.endIndex) {
                out.append(self.placeholder)
            }
        }
        return out
    }

    private static func decodeUnreserved(_ text: Substring) -> String {
        guard text.contains("%") || text.contains("+") else { return String(text) }
        var bytes = [UInt8]()
        var iterator = Array(text.utf8)[...]
        while let c = iterator.popFirst() {
            if c == UInt8(ascii: "%"), iterator.count >= 2,
                let value = UInt8(String(decoding: iterator.prefix(2), as: UTF8.self), radix: 16)
            {
                bytes.append(value)
                iterator = iterator.dropFirst(2)
            } else {
                bytes.append(c)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
