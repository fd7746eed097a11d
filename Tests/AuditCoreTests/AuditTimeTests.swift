import Testing

@testable import AuditCore

@Suite("Audit time (RFC 3339, microseconds)")
struct AuditTimeTests {
    @Test(
        "known instants",
        arguments: [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_700_000_000_123_456, "2023-11-14T22:13:20.123456Z"),
            (1_709_208_000_000_000, "2024-02-29T12:00:00.000000Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
            (4_102_444_799_999_999, "2099-12-31T23:59:59.999999Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
            (-62_135_596_800_000_000, "0001-01-01T00:00:00.000000Z"),
        ] as [(Int64, String)]
    )
    func known(microseconds: Int64, text: String) {
        #expect(AuditTime(microseconds: microseconds).rfc3339 == text)
        #expect(AuditTime(rfc3339: text)?.microseconds == microseconds)
    }

    @Test("round trip over a spread of instants, before and after the epoch")
    func roundTrip() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<2000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            // Years 0001 to 9999.
            let micros = Int64(bitPattern: state >> 1) % 253_402_300_800_000_000 - 62_135_596_800_000_000 / 2
            let time = AuditTime(microseconds: micros)
            let text = time.rfc3339
            #expect(text.utf8.count == 27)
            #expect(AuditTime(rfc3339: text) == time, "\(micros) \(text)")
        }
    }

    @Test("text order is time order")
    func ordering() {
        let a = AuditTime(microseconds: 1_700_000_000_000_000)
        let b = AuditTime(microseconds: 1_700_000_000_000_001)
        #expect(a < b)
        #expect(a.rfc3339 < b.rfc3339)
        #expect(
            AuditTime(microseconds: 1_700_000_009_999_999).rfc3339
                < AuditTime(microseconds: 1_700_000_010_000_000).rfc3339
        )
    }

    @Test("parses offsets, fewer or more fractional digits, lower-case t and z")
    func parsing() {
        #expect(AuditTime(rfc3339: "2026-11-22T10:15:04.5+02:00")?.rfc3339 == "2026-11-22T08:15:04.500000Z")
        #expect(AuditTime(rfc3339: "2026-11-22T00:15:04-01:30")?.rfc3339 == "2026-11-22T01:45:04.000000Z")
        #expect(AuditTime(rfc3339: "2026-11-22T10:15:04.123456789Z")?.rfc3339 == "2026-11-22T10:15:04.123456Z")
        #expect(AuditTime(rfc3339: "2026-11-22t10:15:04z")?.rfc3339 == "2026-11-22T10:15:04.000000Z")
        #expect(AuditTime(rfc3339: "2026-11-22T10:15:04Z")?.seconds == 1_795_342_504)
    }

    @Test(
        "refuses what is not RFC 3339",
        arguments: [
            "", "2026-11-22", "2026-11-22T10:15:04", "2026-11-22 10:15:04Z", "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "1900-02-29T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-11-32T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T10:60:00Z", "2026-11-22T10:15:04.Z",
            "2026-11-22T10:15:04+0200", "2026-11-22T10:15:04Zjunk", "20x6-11-22T10:15:04Z",
        ]
    )
    func refuses(text: String) {
        #expect(AuditTime(rfc3339: text) == nil)
    }
}
