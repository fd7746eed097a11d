import ProxyModel
import Testing

@Suite("Host normalization")
struct HostNormalizationTests {
    @Test(
        "accepted hosts",
        arguments: [
            ("Example.COM.:8080", "example.com"),
            ("example.com", "example.com"),
            ("EXAMPLE.COM", "example.com"),
            ("example.com.", "example.com"),
            ("example.com:443", "example.com"),
            ("example.com:1", "example.com"),
            ("example.com:65535", "example.com"),
            ("example.com:00080", "example.com"),
            ("localhost", "localhost"),
            ("my_host-1.internal", "my_host-1.internal"),
            ("10.0.0.1", "10.0.0.1"),
            ("10.0.0.1:8080", "10.0.0.1"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("[2001:DB8::A]", "[2001:db8::a]"),
            ("[2001:db8::a]:8443", "[2001:db8::a]"),
            ("[::ffff:10.0.0.1]", "[::ffff:10.0.0.1]"),
            ("a", "a"),
        ]
    )
    func accepted(_ input: String, _ expected: String) {
        #expect(HostNormalizer.normalize(input) == .success(expected))
    }

    @Test(
        "refused hosts",
        arguments: [
            "", ".", "..", "a..b", ".example.com", "example.com..", "exa mple", "host:99999", "host:65536",
            "host:0", "host:", "host:80:80", "host:8o", "host:+80", "host:123456", "user@host", "user@host:80",
            "ex\u{e4}mple.com", "ex%41mple", "a/b", "a\\b", "a\u{0}b", "[::1", "[]", "[::1]x", "[::1]:",
            "[::1]:99999", "[::g]", "[1.2.3.4]", "[::1%eth0]", "[1::2::3]", "::1", "*.example.com",
            "example.com\t", "[::1]]",
        ]
    )
    func refused(_ input: String) {
        #expect(HostNormalizer.normalize(input) == .failure(.hostInvalid))
    }

    @Test func normalizedHostsAreFixedPoints() throws {
        for input in ["Example.COM.:8080", "[2001:DB8::A]:1", "a.b.c"] {
            let once = try HostNormalizer.normalize(input).get()
            #expect(HostNormalizer.normalize(once) == .success(once))
        }
    }
}
