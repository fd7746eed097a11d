import ProxyModel
import Testing

@Suite("IP addresses and CIDR blocks")
struct IPAddressTests {
    @Test(
        "IPv4 parsing",
        arguments: [
            ("0.0.0.0", UInt32(0)),
            ("10.0.0.1", 0x0A00_0001),
            ("127.0.0.1", 0x7F00_0001),
            ("192.168.1.254", 0xC0A8_01FE),
            ("255.255.255.255", 0xFFFF_FFFF),
            ("1.2.3.4", 0x0102_0304),
        ]
    )
    func ipv4(_ text: String, _ value: UInt32) {
        #expect(IPAddress.parse(text) == .v4(value))
        #expect(IPAddress.v4(value).description == text)
    }

    @Test(
        "refused addresses",
        arguments: [
            "", "1", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "010.0.0.1", "1.2.3.04", "00.1.2.3",
            "+1.2.3.4", "1.2.3.-4", "1..2.3", "1.2.3.4.", ".1.2.3.4", "1.2.3.4 ", " 1.2.3.4", "0x1.2.3.4",
            "1.2.3.1000", "a.b.c.d", ":", ":::", "1:2", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3",
            ":1::", "1::2:", "::1:", "12345::", "g::", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "[::1]",
            "fe80::1%eth0", "::1.2.3", "::1.2.3.4.5", "::256.1.1.1", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:010.0.0.1",
            "1.2.3.4::", "::ffff:1.2.3.4:5",
        ]
    )
    func refused(_ text: String) {
        #expect(IPAddress.parse(text) == nil)
    }

    @Test(
        "IPv6 parsing and RFC 5952 text",
        arguments: [
            ("::", UInt64(0), UInt64(0), "::"),
            ("::1", 0, 1, "::1"),
            ("0:0:0:0:0:0:0:1", 0, 1, "::1"),
            ("1::", 0x0001_0000_0000_0000, 0, "1::"),
            ("2001:db8::1", 0x2001_0DB8_0000_0000, 1, "2001:db8::1"),
            ("2001:DB8:0:0:0:0:0:1", 0x2001_0DB8_0000_0000, 1, "2001:db8::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", 0x2001_0DB8_0000_0000, 1, "2001:db8::1"),
            // a single zero group is not compressed
            ("2001:db8:0:1:1:1:1:1", 0x2001_0DB8_0000_0001, 0x0001_0001_0001_0001, "2001:db8:0:1:1:1:1:1"),
            // the longest run wins; of equal runs, the first
            ("2001:0:0:1:0:0:0:1", 0x2001_0000_0000_0001, 0x0000_0000_0000_0001, "2001:0:0:1::1"),
            ("2001:db8:0:0:1:0:0:1", 0x2001_0DB8_0000_0000, 0x0001_0000_0000_0001, "2001:db8::1:0:0:1"),
            ("fe80::abcd:ef01:2345:6789", 0xFE80_0000_0000_0000, 0xABCD_EF01_2345_6789, "fe80::abcd:ef01:2345:6789"),
            ("1:2:3:4:5:6:7:8", 0x0001_0002_0003_0004, 0x0005_0006_0007_0008, "1:2:3:4:5:6:7:8"),
            ("1:2:3:4:5:6::", 0x0001_0002_0003_0004, 0x0005_0006_0000_0000, "1:2:3:4:5:6::"),
            ("1:2:3:4:5:6:7::", 0x0001_0002_0003_0004, 0x0005_0006_0007_0000, "1:2:3:4:5:6:7:0"),
            ("::2:3:4:5:6:7:8", 0x0000_0002_0003_0004, 0x0005_0006_0007_0008, "0:2:3:4:5:6:7:8"),
            // IPv4 tail that is not v4-mapped stays IPv6
            ("64:ff9b::192.0.2.33", 0x0064_FF9B_0000_0000, 0x0000_0000_C000_0221, "64:ff9b::c000:221"),
            ("1:2:3:4:5:6:1.2.3.4", 0x0001_0002_0003_0004, 0x0005_0006_0102_0304, "1:2:3:4:5:6:102:304"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", .max, .max, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ]
    )
    func ipv6(_ text: String, _ high: UInt64, _ low: UInt64, _ canonical: String) {
        #expect(IPAddress.parse(text) == .v6(high, low))
        #expect(IPAddress.v6(high, low).description == canonical)
        #expect(IPAddress.parse(canonical) == .v6(high, low))
    }

    @Test(
        "IPv4-mapped IPv6 is IPv4",
        arguments: ["::ffff:10.0.0.1", "::FFFF:10.0.0.1", "0:0:0:0:0:ffff:10.0.0.1", "::ffff:a00:1", "0::ffff:0a00:0001"]
    )
    func mapped(_ text: String) {
        #expect(IPAddress.parse(text) == .v4(0x0A00_0001))
    }

    @Test(
        "CIDR parsing",
        arguments: [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("192.168.1.77/31", "192.168.1.76/31"),
            ("1.2.3.4/32", "1.2.3.4/32"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8:1:2::5/64", "2001:db8:1:2::/64"),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff/65", "2001:db8:ffff:ffff:8000::/65"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("fe80::1/10", "fe80::/10"),
            ("::ffff:10.1.0.0/104", "10.0.0.0/8"),
            ("::ffff:10.1.2.3", "10.1.2.3/32"),
        ]
    )
    func cidr(_ text: String, _ canonical: String) throws {
        let block = try #require(CIDR.parse(text))
        #expect(block.description == canonical)
    }

    @Test(
        "refused CIDR blocks",
        arguments: [
            "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08", "10.0.0.0/8/8",
            "10.0.0.0/a", "10.0.0/8", "::/129", "::/1000", "2001:db8::/3x", "::ffff:10.0.0.0/95", "10.0.0.0 /8",
        ]
    )
    func refusedCIDR(_ text: String) {
        #expect(CIDR.parse(text) == nil)
    }

    @Test func containment() throws {
        let v4 = try #require(CIDR.parse("10.0.0.0/8"))
        #expect(v4.contains(try #require(IPAddress.parse("10.255.1.2"))))
        #expect(v4.contains(try #require(IPAddress.parse("10.0.0.0"))))
        #expect(!v4.contains(try #require(IPAddress.parse("11.0.0.1"))))
        #expect(!v4.contains(try #require(IPAddress.parse("9.255.255.255"))))
        // a v4-mapped client address is IPv4 and matches IPv4 blocks
        #expect(v4.contains(try #require(IPAddress.parse("::ffff:10.9.8.7"))))
        // families never mix
        #expect(!v4.contains(try #require(IPAddress.parse("::a00:1"))))

        let host = try #require(CIDR.parse("192.168.1.10"))
        #expect(host.contains(.v4(0xC0A8_010A)))
        #expect(!host.contains(.v4(0xC0A8_010B)))

        let all4 = try #require(CIDR.parse("0.0.0.0/0"))
        #expect(all4.contains(.v4(0xFFFF_FFFF)))
        #expect(!all4.contains(.v6(0, 1)))

        let v6 = try #require(CIDR.parse("2001:db8::/32"))
        #expect(v6.contains(try #require(IPAddress.parse("2001:db8:ffff::1"))))
        #expect(!v6.contains(try #require(IPAddress.parse("2001:db9::1"))))
        #expect(!v6.contains(.v4(0x2001_0DB8)))

        let v6Low = try #require(CIDR.parse("2001:db8::/96"))
        #expect(v6Low.contains(try #require(IPAddress.parse("2001:db8::ffff:ffff"))))
        #expect(!v6Low.contains(try #require(IPAddress.parse("2001:db8::1:0:0"))))

        let all6 = try #require(CIDR.parse("::/0"))
        #expect(all6.contains(.v6(.max, .max)))
        #expect(!all6.contains(.v4(0)))

        let loopback = try #require(CIDR.parse("::1"))
        #expect(loopback.contains(.v6(0, 1)))
        #expect(!loopback.contains(.v6(0, 2)))
    }

    @Test func containmentMasksABlockBuiltDirectly() {
        // The memberwise initializer does not mask host bits; contains must still be right.
        let block = CIDR(address: .v4(0x0A01_0203), prefixLength: 8)
        #expect(block.contains(.v4(0x0AFF_FFFF)))
        #expect(!block.contains(.v4(0x0B00_0000)))
        let block6 = CIDR(address: .v6(0x2001_0DB8_0000_0001, 5), prefixLength: 32)
        #expect(block6.contains(.v6(0x2001_0DB8_FFFF_0000, 0)))
        #expect(!block6.contains(.v6(0x2001_0DB9_0000_0000, 0)))
    }
}
