import NIOHTTP1
import ProxyConfig
import Testing

@testable import ProxyHTTP

@Suite("bearer token extraction (RFC 6750)")
struct BearerTokenSourceTests {
    static let auth = RouteAuthConfig(issuers: ["corp"], tokenHeader: "x-token", tokenCookie: "session")

    func extract(_ headers: [(String, String)], auth: RouteAuthConfig = Self.auth) -> BearerTokenSource.Extraction {
        BearerTokenSource.extract(from: HTTPHeaders(headers), auth: auth)
    }

    @Test(
        "Authorization header values",
        arguments: [
            ("Bearer abc.def-_~+/", BearerTokenSource.Extraction.token("abc.def-_~+/")),
            ("bearer abc", .token("abc")),
            ("BEARER   abc  ", .token("abc")),
            ("\tBearer abc==", .token("abc==")),
            ("Bearer", .malformed),
            ("Bearer   ", .malformed),
            ("Bearer a b", .malformed),
            ("Bearer ab=c", .malformed),
            ("Bearer abc\u{00e9}", .malformed),
            ("Bearerabc", .none),
            ("Basic dXNlcjpwYXNz", .none),
            ("Bear abc", .none),
            ("", .none),
        ] as [(String, BearerTokenSource.Extraction)]
    )
    func authorization(value: String, expected: BearerTokenSource.Extraction) {
        #expect(self.extract([("Authorization", value)]) == expected)
    }

    @Test("two Authorization headers, in any case, are refused: which one would be checked?")
    func duplicates() {
        #expect(self.extract([("Authorization", "Bearer a"), ("authorization", "Bearer b")]) == .malformed)
        #expect(self.extract([("AUTHORIZATION", "Bearer a")]) == .token("a"))
        // A 13-letter name that is not Authorization is not taken for it.
        #expect(self.extract([("Cache-Control", "Bearer a")]) == .none)
    }

    @Test("the route's token header and cookie, after Authorization")
    func otherSources() {
        #expect(self.extract([("X-Token", " t1 ")]) == .token("t1"))
        #expect(self.extract([("Cookie", "a=1; session=t2; b=2")]) == .token("t2"))
        #expect(self.extract([("Authorization", "Bearer t0"), ("X-Token", "t1")]) == .token("t0"))
        #expect(self.extract([("Authorization", "Basic x"), ("X-Token", "t1")]) == .token("t1"))
        #expect(self.extract([("X-Token", "t 1")]) == .malformed)
    }
}
