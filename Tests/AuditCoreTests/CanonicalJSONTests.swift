import ProxyModel
import Testing

@testable import AuditCore

@Suite("Canonical JSON (RFC 8785)")
struct CanonicalJSONTests {
    static func text(_ value: JSONValue) -> String { String(decoding: CanonicalJSON.encode(value), as: UTF8.self) }

    static func canonical(_ json: String) -> String? {
        guard case .success(let value) = StrictJSON.parse(Array(json.utf8)) else { return nil }
        return self.text(value)
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialization (checked against node).
    @Test(
        arguments: [
            ("0000000000000000", "0"),
            ("8000000000000000", "0"),
            ("0000000000000001", "5e-324"),
            ("8000000000000001", "-5e-324"),
            ("7fefffffffffffff", "1.7976931348623157e+308"),
            ("ffefffffffffffff", "-1.7976931348623157e+308"),
            ("4340000000000000", "9007199254740992"),
            ("c340000000000000", "-9007199254740992"),
            ("4430000000000000", "295147905179352830000"),
            ("44b52d02c7e14af5", "9.999999999999997e+22"),
            ("44b52d02c7e14af6", "1e+23"),
            ("44b52d02c7e14af7", "1.0000000000000001e+23"),
            ("444b1ae4d6e2ef4e", "999999999999999700000"),
            ("444b1ae4d6e2ef4f", "999999999999999900000"),
            ("444b1ae4d6e2ef50", "1e+21"),
            ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
            ("3eb0c6f7a0b5ed8d", "0.000001"),
            ("41b3de4355555553", "333333333.3333332"),
            ("41b3de4355555554", "333333333.33333325"),
            ("41b3de4355555555", "333333333.3333333"),
            ("41b3de4355555556", "333333333.3333334"),
            ("41b3de4355555557", "333333333.33333343"),
            ("becbf647612f3696", "-0.0000033333333333333333"),
            ("43143ff3c1cb0959", "1424953923781206.2"),
        ]
    )
    func appendixB(bits: String, expected: String) {
        let value = Double(bitPattern: UInt64(bits, radix: 16)!)
        #expect(Self.text(.number(value)) == expected)
        // What the text parses back to serializes the same.
        #expect(Self.canonical(expected) == expected)
    }

    @Test(
        "number formatting",
        arguments: [
            (1e30, "1e+30"), (4.5, "4.5"), (0.002, "0.002"), (1e-7, "1e-7"), (-0.0, "0"),
            (333333333.3333333, "333333333.3333333"),
            (1e21, "1e+21"), (1e20, "100000000000000000000"), (Double("1.2345678901234568e20")!, "123456789012345680000"),
            (0.000001, "0.000001"),
            (1.5e-6, "0.0000015"), (-1e-7, "-1e-7"), (1, "1"), (-2.5, "-2.5"), (100, "100"), (1e300, "1e+300"),
            (2e-3, "0.002"),
        ] as [(Double, String)]
    )
    func numbers(value: Double, expected: String) {
        #expect(Self.text(.number(value)) == expected)
    }

    @Test("integers: exact up to 2^53, beyond written as their double (I-JSON)")
    func integers() {
        #expect(Self.text(.integer(0)) == "0")
        #expect(Self.text(.integer(-42)) == "-42")
        #expect(Self.text(.integer(9_007_199_254_740_992)) == "9007199254740992")
        #expect(Self.text(.integer(-9_007_199_254_740_992)) == "-9007199254740992")
        #expect(Self.text(.integer(9_007_199_254_740_993)) == "9007199254740992")
        #expect(Self.text(.integer(Int64.max)) == "9223372036854776000")
    }

    @Test("parsed number literals serialize canonically: 1E30, 4.50, 2e-3, 1e+21, -0")
    func parsedNumbers() {
        #expect(
            Self.canonical("[1E30,4.50,2e-3,0.000000000000000000000000001,1e+21,1e21,-0,-0.0,1e-7]")
                == "[1e+30,4.5,0.002,1e-27,1e+21,1e+21,0,0,1e-7]"
        )
    }

    @Test("RFC 8785 §3.2.2 example: numbers, string escapes and literals")
    func rfcExample() {
        let input = #"""
            {
              "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }
            """#
        let expected =
            #"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        #expect(Self.canonical(input) == expected)
    }

    @Test("RFC 8785 §3.2.3 example: members sorted by UTF-16 code units (not UTF-8 bytes, not scalars)")
    func rfcSorting() {
        let input = #"""
            {
              "\u20ac": "Euro Sign",
              "\r": "Carriage Return",
              "\ufb33": "Hebrew Letter Dalet With Dagesh",
              "1": "One",
              "\ud83d\ude00": "Emoji: Grinning Face",
              "\u0080": "Control",
              "\u00f6": "Latin Small Letter O With Diaeresis"
            }
            """#
        let expected =
            #"{"\r":"Carriage Return","1":"One","\#u{80}":"Control","\#u{F6}":"Latin Small Letter O With Diaeresis","\#u{20AC}":"Euro Sign","\#u{1F600}":"Emoji: Grinning Face","\#u{FB33}":"Hebrew Letter Dalet With Dagesh"}"#
        // Bytes, not String equality (which is canonical equivalence: U+FB33 equals U+05D3 U+05BC).
        #expect(Self.canonical(input).map { Array($0.utf8) } == Array(expected.utf8))
        // U+1F600 (D83D DE00 in UTF-16) sorts before U+FB33, although its UTF-8 bytes (F0...) sort after (EF...).
        #expect(CanonicalJSON.sortedKeys(["\u{FB33}", "\u{1F600}"]) == ["\u{1F600}", "\u{FB33}"])
        #expect(CanonicalJSON.sortedKeys(["b", "a", "B", "aa", ""]) == ["", "B", "a", "aa", "b"])
    }

    @Test("string escapes: the two-character forms, \\u00xx for other controls, everything else raw")
    func strings() {
        #expect(Self.text(.string("\"\\\u{8}\u{C}\n\r\t")) == #""\"\\\b\f\n\r\t""#)
        #expect(Self.text(.string("\u{0}\u{1}\u{1F}")) == #""\u0000\u0001\u001f""#)
        #expect(Self.text(.string("/\u{7F}\u{2028}é😀")) == "\"/\u{7F}\u{2028}é😀\"")
        #expect(Self.text(.string("")) == #""""#)
    }

    @Test("nesting, empty containers and literals")
    func structure() {
        let value: JSONValue = .object([
            "z": .array([]), "a": .object([:]),
            "m": .array([.null, .bool(true), .bool(false), .object(["y": .integer(1), "x": .integer(2)])]),
        ])
        #expect(Self.text(value) == #"{"a":{},"m":[null,true,false,{"x":2,"y":1}],"z":[]}"#)
    }
}
