import ProxyModel
import Testing

@testable import IdentityCore

@Suite("Strict JSON")
struct StrictJSONTests {
    static func parse(_ text: String) -> Result<JSONValue, StrictJSONError> {
        StrictJSON.parse(Array(text.utf8))
    }

    @Test(
        arguments: [
            ("{}", JSONValue.object([:])),
            ("[]", .array([])),
            (
                " \t\r\n{ \"a\" : [ 1 , -2 , 3.5 , true , false , null ] } \n",
                .object(["a": .array([.integer(1), .integer(-2), .number(3.5), .bool(true), .bool(false), .null])])
            ),
            ("0", .integer(0)),
            ("-0", .integer(0)),
            ("1e3", .number(1000)),
            ("1E+3", .number(1000)),
            ("2.5e-1", .number(0.25)),
            ("9223372036854775807", .integer(.max)),
            ("-9223372036854775808", .integer(.min)),
            ("9223372036854775808", .number(9_223_372_036_854_775_808)),
            ("123456789012345678901234567890", .number(1.2345678901234568e29)),
            ("1e308", .number(1e308)),
            ("1e-400", .number(0)),
            (#""plain""#, .string("plain")),
            (#""\"\\\/\b\f\n\r\t""#, .string("\"\\/\u{8}\u{c}\n\r\t")),
            (#""\u0041\u00e9\u20AC""#, .string("Aé€")),
            (#""\ud83d\ude00""#, .string("😀")),
            (#""\u0000""#, .string("\u{0}")),
            ("\"é€😀\"", .string("é€😀")),
            (#"{"a":{"a":{"a":1}}}"#, .object(["a": .object(["a": .object(["a": .integer(1)])])])),
            (#"[{"a":1},{"a":1}]"#, .array([.object(["a": .integer(1)]), .object(["a": .integer(1)])])),
            ("-9223372036854775809", .number(-9_223_372_036_854_775_809)),
            ("-12", .integer(-12)),
            // Objects and arrays nested between siblings: each keeps its own members and elements.
            (
                #"{"a":[1,{"b":[2,3],"c":{}},[]],"d":{"e":[4]},"f":5}"#,
                .object([
                    "a": .array([.integer(1), .object(["b": .array([.integer(2), .integer(3)]), "c": .object([:])]), .array([])]),
                    "d": .object(["e": .array([.integer(4)])]),
                    "f": .integer(5),
                ])
            ),
        ] as [(String, JSONValue)]
    )
    func accepts(_ text: String, _ expected: JSONValue) {
        #expect(Self.parse(text) == .success(expected))
    }

    @Test(
        arguments: [
            // Duplicates, at any depth, also when spelled differently.
            (#"{"a":1,"a":2}"#, StrictJSONError.Code.duplicateKey),
            (#"{"aud":"evil","aud":"good"}"#, .duplicateKey),
            (#"{"a":1,"\u0061":2}"#, .duplicateKey),
            (#"{"x":{"b":1,"b":1}}"#, .duplicateKey),
            (#"[{"ok":1},{"b":[{"c":1,"c":2}]}]"#, .duplicateKey),
            ("{\"\u{e9}\":1,\"e\u{301}\":2}", .duplicateKey),  // canonically equivalent keys
            // Trailing commas and other grammar.
            (#"{"a":1,}"#, .unexpectedByte),
            ("[1,]", .unexpectedByte),
            ("[,1]", .unexpectedByte),
            (#"{"a" 1}"#, .unexpectedByte),
            (#"{a:1}"#, .unexpectedByte),
            ("{'a':1}", .unexpectedByte),
            ("[1 2]", .unexpectedByte),
            ("// c\n{}", .unexpectedByte),
            ("\u{feff}{}", .unexpectedByte),
            ("{}x", .trailingData),
            ("{} {}", .trailingData),
            ("1 2", .trailingData),
            ("", .unexpectedEnd),
            ("   ", .unexpectedEnd),
            ("{", .unexpectedEnd),
            (#"{"a":"#, .unexpectedEnd),
            (#""abc"#, .unexpectedEnd),
            ("tru", .unexpectedEnd),
            ("nul", .unexpectedEnd),
            ("True", .unexpectedByte),
            ("nulL", .unexpectedByte),
            // Numbers.
            ("01", .invalidNumber),
            ("-01", .invalidNumber),
            ("00", .invalidNumber),
            ("1.", .invalidNumber),
            (".5", .unexpectedByte),
            ("-", .invalidNumber),
            ("-a", .invalidNumber),
            ("1e", .invalidNumber),
            ("1e+", .invalidNumber),
            ("+1", .unexpectedByte),
            ("0x10", .trailingData),
            ("NaN", .unexpectedByte),
            ("Infinity", .unexpectedByte),
            ("-Infinity", .invalidNumber),
            ("1e400", .numberOutOfRange),
            ("-1e400", .numberOutOfRange),
            // Strings.
            ("\"a\u{1}b\"", .invalidString),
            ("\"a\nb\"", .invalidString),
            ("\"tab\there\"", .invalidString),
            (#""\x41""#, .invalidEscape),
            (#""\u12""#, .invalidEscape),
            (#""\u12G4""#, .invalidEscape),
            (#""\'""#, .invalidEscape),
            (#""\ud800""#, .loneSurrogate),
            (#""\ud800x""#, .loneSurrogate),
            (#""\ud800\u0041""#, .loneSurrogate),
            (#""\udc00""#, .loneSurrogate),
            (#""\ude00\ud83d""#, .loneSurrogate),
        ] as [(String, StrictJSONError.Code)]
    )
    func refuses(_ text: String, _ code: StrictJSONError.Code) {
        guard case .failure(let error) = Self.parse(text) else {
            Issue.record("accepted \(text.debugDescription)")
            return
        }
        #expect(error.code == code, "\(text.debugDescription): \(error)")
    }

    @Test(
        arguments: [
            [0x22, 0xFF, 0x22],  // not UTF-8 at all
            [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
            [0x22, 0xED, 0xA0, 0x80, 0x22],  // a surrogate encoded in UTF-8
            [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
            [0x22, 0xE2, 0x82, 0x22],  // truncated sequence
            [0x22, 0x5C, 0x6E, 0xFF, 0x22],  // after an escape (slow path)
            [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D],  // in a key
        ] as [[UInt8]]
    )
    func refusesInvalidUTF8(_ bytes: [UInt8]) {
        guard case .failure(let error) = StrictJSON.parse(bytes) else {
            Issue.record("accepted \(bytes)")
            return
        }
        #expect(error.code == .invalidUTF8)
    }

    @Test func nestingDepthIsBounded() {
        let ok = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect((try? Self.parse(ok).get()) != nil)
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        #expect(Self.parse(deep).failureCode == .tooDeep)
        let objects = String(repeating: #"{"a":"#, count: 33) + "1" + String(repeating: "}", count: 33)
        #expect(Self.parse(objects).failureCode == .tooDeep)
        // A hostile depth does not exhaust the stack: refused at the limit, long before.
        let hostile = String(repeating: "[", count: 100_000)
        #expect(Self.parse(hostile).failureCode == .tooDeep)
        #expect(StrictJSON.parse(Array("[[[1]]]".utf8), maxDepth: 2).failureCode == .tooDeep)
        #expect((try? StrictJSON.parse(Array("[[1]]".utf8), maxDepth: 2).get()) == .array([.array([.integer(1)])]))
    }

    @Test func sizeIsBounded() {
        let text = Array(#"{"a":"\#(String(repeating: "x", count: 100))"}"#.utf8)
        #expect(StrictJSON.parse(text, maxBytes: 50).failureCode == .tooLarge)
        #expect((try? StrictJSON.parse(text, maxBytes: text.count).get()) != nil)
    }

    @Test func nonContiguousInputIsParsed() {
        let bytes = Array(#"{"k":[1,2]}"#.utf8).lazy.map { $0 }
        #expect((try? StrictJSON.parse(bytes).get()) == .object(["k": .array([.integer(1), .integer(2)])]))
    }

    @Test func errorsCarryAnOffset() {
        guard case .failure(let error) = Self.parse(#"{"a":1,"a":2}"#) else {
            Issue.record("accepted")
            return
        }
        #expect(error.offset == 7)
        #expect(error.description == "duplicate object key at byte 7")
        // The first repeated key in document order, at its second occurrence, in a nested object too.
        guard case .failure(let nested) = Self.parse(#"{"x":{"b":1,"c":2,"b":3,"c":4}}"#) else {
            Issue.record("accepted")
            return
        }
        #expect(nested.code == .duplicateKey)
        #expect(nested.offset == 18)
    }
}

@Suite("Strict base64url")
struct Base64URLTests {
    @Test(arguments: [
        ("", [] as [UInt8]), ("AA", [0]), ("AAA", [0, 0]), ("AAAA", [0, 0, 0]), ("_-8", [0xFF, 0xEF]),
        ("Zm9vYmFy", Array("foobar".utf8)),
        ("Zm9vYg", Array("foob".utf8)), ("Zm9vYmE", Array("fooba".utf8)),
    ])
    func decodes(_ text: String, _ bytes: [UInt8]) {
        #expect(Base64URL.decode(text) == bytes)
        #expect(Base64URL.encode(bytes) == text)
    }

    @Test(arguments: [
        "Zm9vYg==", "Zm9vYg=", "Zm9v+mFy", "Zm9v/mFy", "Zm9v Ym", "Zm9v\nYm", "A", "AAAAA", "Zm9vYh", "Zm9vYmF", "AB",
        "AAB", "é",
    ])
    func refuses(_ text: String) {
        #expect(Base64URL.decode(text) == nil)
    }

    @Test func roundTripsEveryLength() {
        var bytes: [UInt8] = []
        for length in 0..<64 {
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes, "length \(length)")
            bytes.append(UInt8(truncatingIfNeeded: length &* 37 &+ 11))
        }
    }
}

extension Result where Failure == StrictJSONError {
    var failureCode: StrictJSONError.Code? {
        if case .failure(let error) = self { return error.code }
        return nil
    }
}
