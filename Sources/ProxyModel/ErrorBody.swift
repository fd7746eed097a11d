/// The one JSON shape of every error response: `{"error", "reason", "request_id"}`, plus `route` when known.
///
/// `error` is the status' short name (`bad_request`, `forbidden`, ...), `reason` the ``ReasonCode``.
/// Nothing from the request is echoed except the request id, which is generated or validated by us.
public struct ErrorBody: Sendable, Equatable {
    public var reason: ReasonCode
    public var requestID: String
    public var route: String?
    /// Only on routes with `explain_denials: true`: the rules tried and what failed in each.
    public var explanation: [String]?

    public init(reason: ReasonCode, requestID: String, route: String? = nil, explanation: [String]? = nil) {
        self.reason = reason
        self.requestID = requestID
        self.route = route
        self.explanation = explanation
    }

    public var status: Int { self.reason.status }

    /// The short error name for a status code.
    public static func errorName(forStatus status: Int) -> String {
        switch status {
        case 400: return "bad_request"
        case 401: return "unauthorized"
        case 403: return "forbidden"
        case 404: return "not_found"
        case 405: return "method_not_allowed"
        case 408: return "request_timeout"
        case 413: return "payload_too_large"
        case 417: return "expectation_failed"
        case 421: return "misdirected_request"
        case 429: return "too_many_requests"
        case 431: return "request_header_fields_too_large"
        case 500: return "internal_error"
        case 501: return "not_implemented"
        case 502: return "bad_gateway"
        case 503: return "service_unavailable"
        case 504: return "gateway_timeout"
        case 505: return "http_version_not_supported"
        default: return status >= 500 ? "server_error" : "client_error"
        }
    }

    /// The body as UTF-8 JSON bytes, terminated by a newline.
    public func jsonBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(96)
        out.append(contentsOf: #"{"error":"#.utf8)
        JSONEscaping.appendString(Self.errorName(forStatus: self.status), to: &out)
        out.append(contentsOf: #","reason":"#.utf8)
        JSONEscaping.appendString(self.reason.code, to: &out)
        out.append(contentsOf: #","request_id":"#.utf8)
        JSONEscaping.appendString(self.requestID, to: &out)
        if let route = self.route {
            out.append(contentsOf: #","route":"#.utf8)
            JSONEscaping.appendString(route, to: &out)
        }
        if let explanation = self.explanation {
            out.append(contentsOf: #","explanation":["#.utf8)
            for (index, line) in explanation.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSONEscaping.appendString(line, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(contentsOf: "}\n".utf8)
        return out
    }
}

/// Minimal JSON string escaping (RFC 8259) for the few strings the model writes by hand.
public enum JSONEscaping {
    private static let hex: [UInt8] = Array("0123456789abcdef".utf8)

    public static func appendString(_ string: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 0x0A: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20, 0x7F:
                out.append(contentsOf: Array(#"\u00"#.utf8))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    public static func quoted(_ string: String) -> String {
        var out: [UInt8] = []
        appendString(string, to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
