import ProxyModel
import Testing

/// One row of the normalization table: a request target and what must come out of it.
struct TargetCase: Sendable, CustomTestStringConvertible {
    let target: String
    let expected: Result<RequestTarget, ReasonCode>

    var testDescription: String { JSONEscaping.quoted(self.target) }

    static func ok(_ target: String, path: String, query: String? = nil, authority: String? = nil) -> TargetCase {
        TargetCase(target: target, expected: .success(RequestTarget(authority: authority, path: path, query: query)))
    }

    static func refused(_ target: String, _ reason: ReasonCode) -> TargetCase {
        TargetCase(target: target, expected: .failure(reason))
    }
}

@Suite("Request target normalization")
struct PathNormalizationTests {
    /// The table DESIGN.md "Normalization" requires, plus neighbours of each case.
    static let requiredTable: [TargetCase] = [
        .ok("/public/../admin", path: "/admin"),
        .ok("/%61dmin", path: "/admin"),
        .ok("/public/%2e%2e/admin", path: "/admin"),
        .refused("/admin;x", .pathParameter),
        .refused("/admin%2fx", .pathEncodedSlash),
        .refused("/admin%2Fx", .pathEncodedSlash),
        .refused("/admin%5cx", .pathBackslash),
        .ok("//admin", path: "/admin"),
        .ok("/./admin", path: "/admin"),
        .refused("/a%00b", .pathControlCharacter),
        .refused("/caf\u{e9}", .pathNonASCII),
        .ok("/%c3%a9", path: "/%C3%A9"),
        .refused("/%ff", .pathInvalidUTF8),
        .refused("/%zz", .pathMalformedEscape),
        .refused("/%4", .pathMalformedEscape),
        .refused("/../x", .pathAboveRoot),
        .refused("/a#b", .pathFragment),
        .refused("/a?b=1#c", .pathFragment),
        .ok("/a?x=%2F&y", path: "/a", query: "x=%2F&y"),
        .ok("http://Example.com:8080/a/../b?q", path: "/b", query: "q", authority: "Example.com:8080"),
        .refused("*", .unsupportedTargetForm),
        .refused("example.com:443", .unsupportedTargetForm),
        .ok("/a%7eb", path: "/a~b"),
        .ok("/a%3bb", path: "/a%3Bb"),
    ]

    static let moreTable: [TargetCase] = [
        // already normalized: returned as is
        .ok("/", path: "/"),
        .ok("/a/b/c", path: "/a/b/c"),
        .ok("/a/", path: "/a/"),
        .ok("/a-b_c~d.e/f!$&'()*+,=:@", path: "/a-b_c~d.e/f!$&'()*+,=:@"),
        .ok("/.well-known/x", path: "/.well-known/x"),
        .ok("/a/...", path: "/a/..."),
        .ok("/a/..b/.c", path: "/a/..b/.c"),
        // trailing slash and dot segments
        .ok("/a/b/..", path: "/a/"),
        .ok("/a/.", path: "/a/"),
        .ok("/a/./", path: "/a/"),
        .ok("/a/b/../", path: "/a/"),
        .ok("/a/..", path: "/"),
        .ok("/.", path: "/"),
        .ok("/./", path: "/"),
        .ok("//", path: "/"),
        .ok("///a///b//", path: "/a/b/"),
        .ok("/a/b/c/../../d", path: "/a/d"),
        .ok("/a/./b/./c", path: "/a/b/c"),
        .ok("/a//../b", path: "/b"),
        .refused("/a/../..", .pathAboveRoot),
        .refused("/..", .pathAboveRoot),
        .refused("/%2e%2e", .pathAboveRoot),
        .refused("/.%2E/x", .pathAboveRoot),
        .ok("/a/%2E", path: "/a/"),
        .ok("/a/%2e%2e/%2e/b", path: "/b"),
        // escapes: unreserved decoded, everything else upper-case
        .ok("/%41%5a%61%7A%30%39%2D%2E%5F%7E", path: "/AZaz09-._~"),
        .ok("/a%3Bb", path: "/a%3Bb"),
        .ok("/a%25b", path: "/a%25b"),
        .ok("/a%20b", path: "/a%20b"),
        .ok("/a%3fb", path: "/a%3Fb"),
        .ok("/a%23b", path: "/a%23b"),
        .ok("/a%2a", path: "/a%2A"),
        .ok("/%e2%82%ac", path: "/%E2%82%AC"),
        .ok("/%F0%9F%98%80", path: "/%F0%9F%98%80"),
        .ok("/%ed%9f%bf", path: "/%ED%9F%BF"),
        .ok("/%F4%8F%BF%BF", path: "/%F4%8F%BF%BF"),
        .refused("/a%2f", .pathEncodedSlash),
        .refused("/a%5C", .pathBackslash),
        .refused("/a%0a", .pathControlCharacter),
        .refused("/a%7f", .pathControlCharacter),
        .refused("/a%1F", .pathControlCharacter),
        .refused("/%", .pathMalformedEscape),
        .refused("/a%", .pathMalformedEscape),
        .refused("/%g0", .pathMalformedEscape),
        .refused("/%4/x", .pathMalformedEscape),
        // invalid UTF-8 in escapes
        .refused("/%c3", .pathInvalidUTF8),
        .refused("/%c3/%a9", .pathInvalidUTF8),
        .refused("/%c3a", .pathInvalidUTF8),
        .refused("/%c3%41", .pathInvalidUTF8),
        .refused("/%a9", .pathInvalidUTF8),
        .refused("/%c0%af", .pathInvalidUTF8),
        .refused("/%c1%bf", .pathInvalidUTF8),
        .refused("/%e0%80%af", .pathInvalidUTF8),
        .refused("/%ed%a0%80", .pathInvalidUTF8),
        .refused("/%f0%80%80%af", .pathInvalidUTF8),
        .refused("/%f4%90%80%80", .pathInvalidUTF8),
        .refused("/%f5%80%80%80", .pathInvalidUTF8),
        .refused("/%e2%82", .pathInvalidUTF8),
        // raw bytes
        .refused("/a b", .pathInvalidCharacter),
        .refused("/a\"b", .pathInvalidCharacter),
        .refused("/a<b", .pathInvalidCharacter),
        .refused("/a>b", .pathInvalidCharacter),
        .refused("/a[b", .pathInvalidCharacter),
        .refused("/a]b", .pathInvalidCharacter),
        .refused("/a^b", .pathInvalidCharacter),
        .refused("/a`b", .pathInvalidCharacter),
        .refused("/a{b", .pathInvalidCharacter),
        .refused("/a|b", .pathInvalidCharacter),
        .refused("/a}b", .pathInvalidCharacter),
        .refused("/a\\b", .pathBackslash),
        .refused("/a\u{0}b", .pathControlCharacter),
        .refused("/a\tb", .pathControlCharacter),
        .refused("/a\u{7f}", .pathControlCharacter),
        .refused("/\u{1F600}", .pathNonASCII),
        .refused("/a;b=c/d", .pathParameter),
        // raw-byte errors are reported before escape and segment errors
        .refused("/../a;b", .pathParameter),
        .refused("/%zz\\", .pathBackslash),
        // queries
        .ok("/a?", path: "/a", query: ""),
        .ok("/?a=b", path: "/", query: "a=b"),
        .ok("/a?b?c=/../d", path: "/a", query: "b?c=/../d"),
        .ok("/a/../b?x=%zz", path: "/b", query: "x=%zz"),
        .ok("/a/b/c/d/e/f/g/h/i/j/k?long=query-string", path: "/a/b/c/d/e/f/g/h/i/j/k", query: "long=query-string"),
        .refused("/a?b c", .queryInvalidCharacter),
        .refused("/a?b\u{7f}", .queryInvalidCharacter),
        .refused("/a?caf\u{e9}", .queryInvalidCharacter),
        .refused("/a?\t", .queryInvalidCharacter),
        .refused("/a#", .pathFragment),
        .refused("/a?#", .pathFragment),
        // target forms
        .refused("", .unsupportedTargetForm),
        .refused("a/b", .unsupportedTargetForm),
        .refused("?a", .unsupportedTargetForm),
        .refused("ftp://example.com/a", .unsupportedTargetForm),
        .refused("http:/example.com/a", .unsupportedTargetForm),
        .refused("localhost:8080", .unsupportedTargetForm),
        .ok("HTTPS://example.com", path: "/", authority: "example.com"),
        .ok("https://example.com?x", path: "/", query: "x", authority: "example.com"),
        .ok("http://example.com/", path: "/", authority: "example.com"),
        .ok("http://[::1]:8080/a/./b", path: "/a/b", authority: "[::1]:8080"),
        .ok("hTtP://EXAMPLE.com/%7Euser", path: "/~user", authority: "EXAMPLE.com"),
        .refused("http:///a", .hostInvalid),
        .refused("http://", .hostInvalid),
        .refused("http://user@example.com/a", .hostInvalid),
        .refused("http://user:pw@example.com/", .hostInvalid),
        .refused("http://example.com:0/", .hostInvalid),
        .refused("http://exa%6dple.com/", .hostInvalid),
        .refused("http://example.com/a/../../b", .pathAboveRoot),
        .refused("http://example.com/%2f", .pathEncodedSlash),
    ]

    @Test("required table", arguments: requiredTable)
    func requiredCases(_ row: TargetCase) {
        #expect(PathNormalizer.normalizeTarget(row.target) == row.expected)
    }

    @Test("more cases", arguments: moreTable)
    func moreCases(_ row: TargetCase) {
        #expect(PathNormalizer.normalizeTarget(row.target) == row.expected)
    }

    @Test("normalizing is idempotent", arguments: requiredTable + moreTable)
    func idempotent(_ row: TargetCase) throws {
        guard case .success(let target) = row.expected else { return }
        #expect(PathNormalizer.normalizePath(target.path) == .success(target.path))
        #expect(PathNormalizer.normalizeTarget(target.pathAndQuery) == .success(RequestTarget(path: target.path, query: target.query)))
    }

    @Test func normalizePathRefusesWhatIsNotAPath() {
        #expect(PathNormalizer.normalizePath("") == .failure(.unsupportedTargetForm))
        #expect(PathNormalizer.normalizePath("admin") == .failure(.unsupportedTargetForm))
        #expect(PathNormalizer.normalizePath("/a#b") == .failure(.pathFragment))
        #expect(PathNormalizer.normalizePath("/a?b") == .failure(.pathInvalidCharacter))
        #expect(PathNormalizer.normalizePath("/a/%2e%2e/b") == .success("/b"))
    }

    @Test func everyPrintableByteIsClassified() {
        // Each printable ASCII byte either passes through unchanged or is refused; none is rewritten.
        for byte in UInt8(0x21)...UInt8(0x7E) {
            let text = "/a" + String(decoding: [byte], as: UTF8.self) + "b"
            let result = PathNormalizer.normalizePath(text)
            switch byte {
            case UInt8(ascii: ";"): #expect(result == .failure(.pathParameter))
            case UInt8(ascii: "\\"): #expect(result == .failure(.pathBackslash))
            case UInt8(ascii: "#"): #expect(result == .failure(.pathFragment))
            case UInt8(ascii: "%"): #expect(result == .failure(.pathMalformedEscape))
            case UInt8(ascii: "\""), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "["), UInt8(ascii: "]"),
                UInt8(ascii: "^"), UInt8(ascii: "`"), UInt8(ascii: "{"), UInt8(ascii: "|"), UInt8(ascii: "}"),
                UInt8(ascii: "?"):
                #expect(result == .failure(.pathInvalidCharacter), "byte \(byte)")
            default:
                #expect(result == .success(text), "byte \(byte)")
            }
        }
    }

    @Test func everyEscapedASCIIByteHasOneOutcome() {
        for value in UInt8(0)...UInt8(0x7F) {
            let hex = String(value, radix: 16, uppercase: false)
            let escape = "%" + (hex.count == 1 ? "0" + hex : hex)
            let result = PathNormalizer.normalizePath("/x" + escape + "y")
            switch value {
            case UInt8(ascii: "/"): #expect(result == .failure(.pathEncodedSlash))
            case UInt8(ascii: "\\"): #expect(result == .failure(.pathBackslash))
            case 0..<0x20, 0x7F: #expect(result == .failure(.pathControlCharacter), "value \(value)")
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                #expect(result == .success("/x" + String(decoding: [value], as: UTF8.self) + "y"), "value \(value)")
            default:
                #expect(result == .success("/x" + escape.uppercased() + "y"), "value \(value)")
            }
        }
    }

    @Test func pathAndQueryIsWhatTheUpstreamReceives() throws {
        let target = try PathNormalizer.normalizeTarget("/public/%2e%2e/admin?x=1").get()
        #expect(target.pathAndQuery == "/admin?x=1")
        let noQuery = try PathNormalizer.normalizeTarget("/a/./b").get()
        #expect(noQuery.pathAndQuery == "/a/b")
        let emptyQuery = try PathNormalizer.normalizeTarget("/a?").get()
        #expect(emptyQuery.pathAndQuery == "/a?")
    }

    @Test func longPathsNormalize() {
        let segments = Array(repeating: "segment", count: 500)
        let path = "/" + segments.joined(separator: "/")
        #expect(PathNormalizer.normalizePath(path) == .success(path))
        let dotted = "/" + segments.joined(separator: "/./") + "/" + Array(repeating: "..", count: 499).joined(separator: "/")
        #expect(PathNormalizer.normalizePath(dotted) == .success("/segment/"))
        let tooMany = dotted + "/../.."
        #expect(PathNormalizer.normalizePath(tooMany) == .failure(.pathAboveRoot))
    }
}
