import ProxyModel
import Testing

@Suite("Error bodies and reason codes")
struct ErrorBodyTests {
    private func text(_ body: ErrorBody) -> String {
        String(decoding: body.jsonBytes(), as: UTF8.self)
    }

    @Test func exactBytes() {
        let body = ErrorBody(reason: .pathEncodedSlash, requestID: "req-1")
        #expect(text(body) == #"{"error":"bad_request","reason":"path_encoded_slash","request_id":"req-1"}"# + "\n")
        #expect(body.status == 400)
    }

    @Test func withRoute() {
        let body = ErrorBody(reason: .noRuleMatched, requestID: "abc", route: "airflow-ui")
        #expect(
            text(body)
                == #"{"error":"forbidden","reason":"no_rule_matched","request_id":"abc","route":"airflow-ui"}"# + "\n"
        )
    }

    @Test func statusNames() {
        #expect(text(ErrorBody(reason: .unauthenticated, requestID: "r")).hasPrefix(#"{"error":"unauthorized","#))
        #expect(text(ErrorBody(reason: .routeNotFound, requestID: "r")).hasPrefix(#"{"error":"not_found","#))
        #expect(text(ErrorBody(reason: .upstreamTimeout, requestID: "r")).hasPrefix(#"{"error":"gateway_timeout","#))
        #expect(ErrorBody.errorName(forStatus: 418) == "client_error")
        #expect(ErrorBody.errorName(forStatus: 599) == "server_error")
    }

    @Test func escaping() {
        let body = ErrorBody(reason: .internalError, requestID: "a\"b\\c\nd\re\tf\u{1}g\u{7f}h\u{e9}", route: "r\"")
        let expected =
            #"{"error":"internal_error","reason":"internal_error","request_id":"a\"b\\c\nd\re\tf\u0001g\u007fh"#
            + "\u{e9}" + #"","route":"r\""}"# + "\n"
        #expect(text(body) == expected)
        #expect(JSONEscaping.quoted("\u{1f}") == #""\u001f""#)
        #expect(JSONEscaping.quoted("") == #""""#)
    }

    @Test func everyReasonHasAStableCodeAndAnErrorStatus() {
        var seen = Set<String>()
        for reason in ReasonCode.all {
            #expect(seen.insert(reason.code).inserted, "duplicate code \(reason.code)")
            #expect((400...599).contains(reason.status), "\(reason.code)")
            let snakeCase = reason.code.utf8.allSatisfy {
                ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "_")
            }
            #expect(snakeCase, "\(reason.code)")
        }
        #expect(seen.count == ReasonCode.all.count)
    }

    @Test func reasonCodesCompareByCode() {
        #expect(ReasonCode("x", status: 400) == ReasonCode("x", status: 500))
        #expect(ReasonCode("x", status: 400) != ReasonCode("y", status: 400))
        #expect(ReasonCode.pathAboveRoot.description == "path_above_root")
    }
}
